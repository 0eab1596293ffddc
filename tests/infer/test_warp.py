"""Warp renderer: piecewise-affine warp against skimage, the inner-mouth mask against matplotlib,
and a real photo whose opened mouth dlib reads as open."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from matplotlib.path import Path
from skimage import data, transform
from skimage.draw import polygon

from macl_jax.infer.warp import (
    WarpRenderer,
    _paint_mouth,
    border_points,
    mouth_interior_mask,
    piecewise_affine_warp,
    triangulate,
)


def _control_points(rng: np.random.Generator, size: int, count: int, margin: float) -> np.ndarray:
    interior = rng.uniform(margin, size - 1 - margin, (count, 2))
    return np.concatenate([interior, border_points(size)]).astype(np.float32)


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    e = b - a
    t = np.clip(((px - a[0]) * e[0] + (py - a[1]) * e[1]) / max(e @ e, 1e-12), 0.0, 1.0)
    return np.hypot(px - a[0] - t * e[0], py - a[1] - t * e[1])


def test_border_points_are_distinct_evenly_spaced_and_on_the_border():
    points = border_points(9, per_side=4)
    assert points.shape == (16, 2) and points.dtype == np.float32
    assert len(np.unique(points, axis=0)) == 16
    on_border = (points == 0) | (points == 8)
    assert on_border.any(axis=1).all()
    for corner in [(0, 0), (8, 0), (8, 8), (0, 8)]:
        assert (points == corner).all(axis=1).any()
    steps = np.abs(np.diff(np.concatenate([points, points[:1]]), axis=0)).sum(axis=1)
    np.testing.assert_allclose(steps, 2.0)  # perimeter 32 in 16 equal steps
    with pytest.raises(ValueError, match="per_side"):
        border_points(9, per_side=0)


def test_triangulate_covers_the_points_and_rejects_degenerate_input():
    points = _control_points(np.random.default_rng(0), 64, 10, 8.0)
    triangles = triangulate(points)
    assert triangles.dtype == np.int32 and triangles.shape[1] == 3
    corners = points[triangles]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    areas = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert areas.sum() == pytest.approx(63.0**2, rel=1e-5)  # the border square, tiled once
    with pytest.raises(ValueError, match="at least 3"):
        triangulate(points[:2])
    with pytest.raises(ValueError, match="one line"):
        triangulate(np.stack([np.arange(5.0), 2 * np.arange(5.0) + 1], axis=-1))
    with pytest.raises(ValueError, match="NaN"):
        triangulate(np.where(np.arange(len(points))[:, None] == 3, np.nan, points))


def test_identity_warp_returns_the_image_for_every_frame():
    rng = np.random.default_rng(1)
    image = rng.random((48, 64, 3), dtype=np.float32)
    source = np.concatenate([rng.uniform(4, 43, (20, 2)), border_points(48)]).astype(np.float32)
    source[20:, 0] *= 63 / 47  # border of a 48 x 64 image
    triangles = triangulate(source)
    target = np.broadcast_to(source, (2, 3, *source.shape))
    out = jax.jit(piecewise_affine_warp)(image, source, target, triangles)
    assert out.shape == (2, 3, 48, 64, 3) and out.dtype == jnp.float32
    assert float(jnp.abs(out - image).max()) < 1e-4


def test_agrees_with_skimage_piecewise_affine_inside_the_triangles():
    image = transform.resize(data.astronaut(), (128, 128), anti_aliasing=True, preserve_range=True).astype(np.float32)
    rng = np.random.default_rng(2)
    source = _control_points(rng, 128, 30, 12.0)
    target = source.copy()
    target[:30] += rng.normal(0.0, 2.0, (30, 2)).astype(np.float32)
    # skimage triangulates its first argument (the output points); use that topology here too.
    triangles = triangulate(target)
    got = np.asarray(piecewise_affine_warp(image, source, target, triangles))

    cls = transform.PiecewiseAffineTransform
    if hasattr(cls, "from_estimate"):
        tform = cls.from_estimate(target.astype(np.float64), source.astype(np.float64))
    else:
        tform = cls()
        tform.estimate(target.astype(np.float64), source.astype(np.float64))
    assert {tuple(sorted(t)) for t in tform._tesselation.simplices} == {tuple(sorted(t)) for t in triangles}
    want = transform.warp(image, tform, order=1, mode="edge", preserve_range=True)

    py, px = np.mgrid[0:128, 0:128].astype(np.float64)
    edge_distance = np.full((128, 128), np.inf)
    for tri in triangles:
        for i in range(3):
            a, b = target[tri[i]].astype(np.float64), target[tri[(i + 1) % 3]].astype(np.float64)
            edge_distance = np.minimum(edge_distance, _segment_distance(px, py, a, b))
    away = (edge_distance > 1.5) & (px > 2) & (px < 125) & (py > 2) & (py < 125)
    assert away.mean() > 0.5
    diff = np.abs(got - want)[away]
    assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.05, (diff.mean(), np.percentile(diff, 99))
    assert np.abs(got - image)[away].mean() > 2.0  # the displacements did move the content


def test_translated_interior_moves_the_content_by_exactly_that():
    rng = np.random.default_rng(3)
    image = rng.random((96, 96, 3), dtype=np.float32)
    grid = np.stack(np.meshgrid(np.linspace(28, 68, 5), np.linspace(28, 68, 5)), axis=-1).reshape(-1, 2)
    interior = grid + rng.uniform(-2, 2, grid.shape)
    source = np.concatenate([interior, border_points(96)]).astype(np.float32)
    dx, dy = 5, -3
    target = source.copy()
    target[: len(interior)] += np.float32([dx, dy])
    out = np.asarray(piecewise_affine_warp(image, source, target, triangulate(source)))
    # Around (48, 48) every covering triangle has interior vertices only.
    y, x = np.mgrid[40:57, 40:57]
    np.testing.assert_allclose(out[y, x], image[y - dy, x - dx], atol=1e-4)
    assert np.abs(out[y, x] - image[y, x]).mean() > 0.1


def test_collapsed_targets_give_finite_output():
    rng = np.random.default_rng(4)
    image = rng.random((64, 64, 3), dtype=np.float32)
    source = _control_points(rng, 64, 15, 8.0)
    triangles = triangulate(source)
    interior_collapsed = source.copy()
    interior_collapsed[:15] = (30.0, 35.0)
    everything_collapsed = np.full_like(source, 20.0)
    out = np.asarray(piecewise_affine_warp(image, source, np.stack([interior_collapsed, everything_collapsed]), triangles))
    assert np.isfinite(out).all()
    # The border stays anchored: its points did not move.
    np.testing.assert_allclose(out[0, 0, 0], image[0, 0], atol=1e-5)
    np.testing.assert_allclose(out[0, 63, 63], image[63, 63], atol=1e-5)


def test_mouth_mask_matches_matplotlib_on_a_concave_octagon():
    octagon = np.array([(20, 18), (40, 30), (62, 16), (52, 40), (60, 62), (40, 48), (18, 60), (28, 40)], np.float32)
    landmarks = np.zeros((2, 68, 2), np.float32)
    landmarks[0, 60:68] = octagon
    landmarks[1, 60:68] = octagon[::-1] + np.float32([3.3, -2.6])  # clockwise, shifted off the grid
    mask = np.asarray(jax.jit(mouth_interior_mask, static_argnums=(1, 2))(landmarks, 72, 80))
    assert mask.shape == (2, 72, 80) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0

    py, px = np.mgrid[0:72, 0:80].astype(np.float64)
    for frame in range(2):
        poly = landmarks[frame, 60:68].astype(np.float64)
        inside = Path(poly).contains_points(np.stack([px.ravel(), py.ravel()], axis=-1)).reshape(72, 80)
        distance = np.min([_segment_distance(px, py, poly[i], poly[(i + 1) % 8]) for i in range(8)], axis=0)
        far = distance > 1.5
        assert (mask[frame][far] == inside[far]).all()
        assert ((mask[frame] > 0) & (mask[frame] < 1)).sum() > 50  # an anti-aliased edge
        shoelace = 0.5 * abs(np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1]))
        assert mask[frame].sum() == pytest.approx(shoelace, rel=0.01)


def test_mouth_paint_is_off_when_the_target_is_no_more_open_than_the_photo():
    rng = np.random.default_rng(5)
    landmarks = np.zeros((1, 68, 2), np.float32)
    landmarks[0, 0], landmarks[0, 16] = (0, 30), (60, 30)
    landmarks[0, 60:68] = [(20, 30), (25, 28), (30, 27), (35, 28), (40, 30), (35, 33), (30, 34), (25, 33)]
    frames = jnp.asarray(rng.uniform(0, 255, (1, 64, 64, 3)), jnp.float32)
    photo_opening = jnp.float32(7.0 / 60.0)  # the photo's mouth: 7 px open on a 60 px face
    paint = jax.jit(_paint_mouth)
    colours = (jnp.float32([40, 12, 14]), jnp.float32([225, 220, 210]))
    assert float(jnp.abs(paint(frames, landmarks, photo_opening, *colours) - frames).max()) == 0.0
    assert float(jnp.abs(paint(frames, landmarks, jnp.float32(0.0), *colours) - frames).max()) > 50.0


@pytest.fixture(scope="module")
def dlib_landmarks():
    import dlib
    import face_recognition_models as models
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_model_location())

    def find(image: np.ndarray) -> np.ndarray:
        boxes = detector(image, 1)
        assert len(boxes) > 0, "dlib found no face"
        shape = predictor(image, max(boxes, key=lambda r: r.area()))
        return np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], np.float32)

    return find


def test_renderer_opens_the_mouth_of_a_real_photo(dlib_landmarks):
    photo = np.ascontiguousarray(data.astronaut()[:256, 96:352])  # a square crop around the face
    landmarks = dlib_landmarks(photo)
    renderer = WarpRenderer(photo, landmarks)
    opened = landmarks.copy()
    opened[[*range(5, 12), *range(55, 60), *range(64, 68)], 1] += 10.0  # jaw, lower lip down
    frames = renderer(np.stack([landmarks, opened]))
    assert frames.shape == (2, 256, 256, 3) and frames.dtype == np.uint8

    assert np.abs(frames[0].astype(np.float64) - photo).mean() < 1.0
    np.testing.assert_array_equal(frames[1][:60], photo[:60])  # far from the moved points: untouched

    rows, cols = polygon(opened[60:68, 1], opened[60:68, 0], photo.shape[:2])
    drop = photo[rows, cols].mean() - frames[1][rows, cols].astype(np.float64).mean()
    assert drop > 40, drop

    def opening(points: np.ndarray) -> float:
        return float(points[66, 1] - points[62, 1])

    seen = dlib_landmarks(frames[1])
    assert opening(seen) > opening(dlib_landmarks(photo)) + 4, (opening(seen), opening(landmarks))  # measured 17 vs 6
