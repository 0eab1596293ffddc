"""The one-channel face edge map: the synthesised forehead, curves through the landmarks, clean borders."""

import numpy as np
import pytest

from data_pipelines.synthtalk import face
from macl_jax.geometry.forehead import add_forehead
from macl_jax.media.face_edges import EDGE_PARTS, EDGE_PIECES, face_edge_map


def _face(size=64, yaw=0.2):
    posed = face.apply_pose(face.mean_shape()[None], face.euler_to_rotation(yaw, 0.1, 0.05)[None], np.zeros((1, 3)))
    return face.project(posed, size)[0].astype(np.float64)


def test_upper_face_mirrors_the_jaw_about_its_end_line():
    lm = _face()
    out = add_forehead(lm)
    assert out.shape == (83, 2)
    np.testing.assert_array_equal(out[:68], lm)
    yb = (lm[0, 1] + lm[16, 1]) / 2
    for i in range(15):
        src = 15 - i  # 68 mirrors 15, ..., 82 mirrors 1
        np.testing.assert_allclose(out[68 + i], [lm[src, 0], yb + (yb - lm[src, 1]) * 2 / 3])
    assert np.all(out[68:, 1] < yb)  # the jaw hangs below the line, its mirror rises above
    assert EDGE_PARTS[0][16:18] == (16, 68) and EDGE_PARTS[0][-2:] == (82, 0)  # the outline closes


def test_pieces_are_overlapping_triples():
    assert all(len(p) in (2, 3) for p in EDGE_PIECES)
    # A 7-point lip polyline is cut into 3 pieces sharing their end points.
    assert EDGE_PIECES.count((48, 49, 50)) == 1 and (50, 51, 52) in EDGE_PIECES and (52, 53, 54) in EDGE_PIECES
    assert (28, 31) in EDGE_PIECES and (35, 28) in EDGE_PIECES


def test_map_passes_through_every_drawn_landmark():
    size = 64
    lm = _face(size)
    edge = face_edge_map(lm, size)
    assert edge.shape == (size, size) and edge.dtype == np.uint8
    assert set(np.unique(edge)) == {0, 255}
    pts = add_forehead(lm)
    drawn = sorted({i for part in EDGE_PARTS for i in part})
    ys, xs = np.nonzero(edge)
    for i in drawn:
        d = np.min(np.hypot(xs - pts[i, 0], ys - pts[i, 1]))
        assert d <= 1.5, (i, d)
    # Points not on any part (the nose bridge top, 27) need not be drawn; the background stays black.
    assert edge[0, 0] == 0 and edge.mean() < 0.25 * 255


def test_straight_pieces_are_two_pixel_lines_and_batches_match():
    lm = _face(64)
    # Flatten the upper outer lip onto row 40 from x = 20 to 44: pieces fit exact lines.
    lm[48:55, 0] = np.linspace(20, 44, 7)
    lm[48:55, 1] = 40.0
    edge = face_edge_map(lm, 64)
    # Stamps cover the sample pixel and its upper-left neighbours: rows 39-40 along the lip.
    assert edge[39:41, 21:44].min() == 255
    batch = face_edge_map(np.stack([lm, _face(64, yaw=-0.3)]), 64)
    np.testing.assert_array_equal(batch[0], edge)
    np.testing.assert_array_equal(batch[1], face_edge_map(_face(64, yaw=-0.3), 64))


def test_off_canvas_landmarks_draw_no_border_lines():
    lm = _face(64) + np.array([200.0, 0.0])  # the whole face far right of the canvas
    assert face_edge_map(lm, 64).max() == 0
    # Mostly outside (x from ~58 to ~87): clamping the off-canvas samples onto the border
    # would draw a long vertical line in the last column; dropping them leaves the crossings.
    edge = face_edge_map(_face(64) + np.array([40.0, 0.0]), 64)
    assert edge[:, 56:].max() == 255 and (edge[:, -1] > 0).sum() <= 6
    with pytest.raises(ValueError, match="68, 2"):
        face_edge_map(np.zeros((5, 2)), 64)
    with pytest.raises(ValueError, match="NaN"):
        face_edge_map(np.full((68, 2), np.nan), 64)
