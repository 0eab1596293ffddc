"""SynthTalk face geometry: mean face, identity, articulation, pose and projection."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from data_pipelines.synthtalk import face

# iBUG-68 left/right pairs, written out from the annotation scheme (not from face.MIRROR).
_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]
    + [(60, 64), (61, 63), (67, 65)]
)
_MIDLINE = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]

# The normalised 9-point anchor (x, y, z) (docs/decisions.md#tshape-anchor).
_ANCHOR = {
    27: (-0.0163, -0.1626, 0.1185),
    28: (-0.0163, -0.0285, 0.1931),
    29: (-0.0163, 0.1057, 0.2846),
    30: (-0.0163, 0.2154, 0.2935),
    33: (0.0081, 0.3496, 0.1291),
    36: (-0.5041, -0.1626, -0.0626),
    39: (-0.2358, -0.1626, -0.0083),
    42: (0.2276, -0.1626, -0.0067),
    45: (0.4959, -0.1870, -0.0664),
}


def _frames(n, **values):
    """(n, 4) visemes and (n, 5) expression with named columns set to `values` (arrays or scalars)."""
    vis = np.zeros((n, 4))
    expr = np.zeros((n, 5))
    for name, v in values.items():
        if name in face.VISEME_NAMES:
            vis[:, face.VISEME_NAMES.index(name)] = v
        else:
            expr[:, face.EXPRESSION_NAMES.index(name)] = v
    return vis, expr


def test_mean_shape_is_mirror_symmetric():
    m = face.mean_shape()
    assert m.shape == (68, 3) and m.dtype == np.float64
    for a, b in _PAIRS:
        np.testing.assert_allclose(m[a] * [-1, 1, 1], m[b], atol=1e-12, err_msg=f"pair {a}/{b}")
    np.testing.assert_allclose(m[_MIDLINE, 0], 0.0, atol=1e-12)
    # Mirror the whole face with the written-out pairs: same point set.
    mirrored = m * [-1, 1, 1]
    perm = np.arange(68)
    for a, b in _PAIRS:
        perm[a], perm[b] = b, a
    np.testing.assert_allclose(mirrored[perm], m, atol=1e-12)


def test_mean_shape_units_axes_and_pivot():
    m = face.mean_shape()
    assert np.linalg.norm(m[45] - m[36]) == pytest.approx(1.0, abs=1e-12)
    assert m[0, 0] < 0 < m[16, 0]  # point 0 at image left
    assert m[36, 0] < m[39, 0] < m[42, 0] < m[45, 0]
    assert m[19, 1] < m[37, 1] < m[30, 1] < m[51, 1] < m[57, 1] < m[8, 1]  # y down
    assert np.argmax(m[:, 2]) == 30  # the nose tip is nearest the camera
    # The pivot (origin) is behind every landmark, between the eye line and the chin.
    assert m[:, 2].min() > 0.0
    assert m[36, 1] < 0.0 < m[8, 1]


def test_mean_shape_matches_appendix_a_anchor():
    m = face.mean_shape()
    p = m / abs(m[45, 0] - m[36, 0])
    p = p - p[[33, 36, 45]].mean(axis=0)
    for index, expected in _ANCHOR.items():
        # The anchor is slightly asymmetric (a real face); the mean face is its symmetric version.
        np.testing.assert_allclose(p[index, :2], expected[:2], atol=0.02, err_msg=f"point {index}")
        np.testing.assert_allclose(p[index, 2], expected[2], atol=0.005, err_msg=f"point {index} z")


def test_identity_zero_is_the_mean_face():
    np.testing.assert_allclose(face.identity_shape(np.zeros(5)), face.mean_shape(), atol=1e-12)


_MEASURES = {
    "face_width": lambda p: p[16, 0] - p[0, 0],
    "jaw": lambda p: p[8, 1] - p[48, 1],  # mouth corners: moved by no identity coefficient
    "eye_distance": lambda p: np.linalg.norm(p[42] - p[39]),
    "nose": lambda p: p[33, 1] - p[27, 1],
    "lip_thickness": lambda p: (p[62, 1] - p[51, 1]) + (p[57, 1] - p[66, 1]),
}


@pytest.mark.parametrize("name", face.IDENTITY_NAMES)
def test_identity_coefficient_changes_its_measure_monotonically(name):
    k = face.IDENTITY_NAMES.index(name)
    values = []
    others = {n: [] for n in _MEASURES if n != name}
    for c in np.linspace(-3, 3, 7):
        coeffs = np.zeros(5)
        coeffs[k] = c
        p = face.identity_shape(coeffs)
        values.append(_MEASURES[name](p))
        for n in others:
            others[n].append(_MEASURES[n](p))
    values = np.array(values)
    assert np.all(np.diff(values) > 0), values
    # Clearly distinct at +-3 sigma (> 10 % of the mean value) ...
    assert (values[-1] - values[0]) / values[3] > 0.1
    # ... and the other named measures hardly move.
    for n, v in others.items():
        assert np.ptp(v) / abs(v[3]) < 0.05, (n, v)


def test_identity_extremes_stay_plausible():
    for signs in itertools.product([-3.0, 3.0], repeat=5):
        p = face.identity_shape(np.array(signs))
        assert p[57, 1] - p[66, 1] > 0.04 and p[62, 1] - p[51, 1] > 0.03  # lips keep a thickness
        assert p[33, 1] < p[51, 1] - 0.05  # nose above the mouth
        assert p[45, 0] < p[16, 0] - 0.15 and p[36, 0] > p[0, 0] + 0.15  # eyes inside the face
        assert p[8, 1] > p[57, 1] + 0.2  # a chin below the lower lip
        eyes = np.linalg.norm(p[42] - p[39])
        assert 0.33 < eyes < 0.6
    with pytest.raises(ValueError, match="identity coeffs"):
        face.identity_shape(np.zeros(4))


def test_articulate_zero_is_neutral():
    neutral = face.identity_shape(np.array([0.5, -1.0, 0.3, 2.0, -0.7]))
    vis, expr = _frames(3)
    out = face.articulate(neutral, vis, expr)
    assert out.shape == (3, 68, 3)
    np.testing.assert_allclose(out, np.broadcast_to(neutral, out.shape), atol=1e-12)


def test_jaw_open_opens_the_mouth_monotonically_with_a_rigid_mandible():
    jaw = np.linspace(0, 1, 6)
    out = face.articulate(face.mean_shape(), *_frames(6, jaw_open=jaw))
    opening = out[:, 66, 1] - out[:, 62, 1]
    assert np.all(np.diff(opening) > 0)
    assert opening[0] < 0.02 and opening[-1] > 0.2
    # Chin and lower lip go down (and the chin back, as the mandible turns about the ears).
    assert np.all(np.diff(out[:, 8, 1]) > 0) and np.all(np.diff(out[:, 57, 1]) > 0)
    assert out[-1, 8, 2] < out[0, 8, 2]
    # Points carried fully by the mandible keep their mutual distances (a rotation).
    rigid = [5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 65, 66, 67]
    d0 = np.linalg.norm(out[0, rigid, None] - out[0, None, rigid], axis=-1)
    d1 = np.linalg.norm(out[-1, rigid, None] - out[-1, None, rigid], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-9)
    # The upper face does not move.
    np.testing.assert_allclose(out[-1, 17:48], out[0, 17:48], atol=1e-12)


def test_closure_brings_the_inner_lips_together_even_with_the_jaw_open():
    out = face.articulate(face.mean_shape(), *_frames(3, jaw_open=1.0, closure=[0.0, 0.5, 1.0]))
    gap = np.linalg.norm(out[:, [61, 62, 63]] - out[:, [67, 66, 65]], axis=-1).max(axis=1)
    assert gap[0] > 0.2 and gap[1] == pytest.approx(0.5 * gap[0], rel=0.01)
    assert gap[2] < 1e-9
    # The outer lips follow: the upper lip stays above, the lower lip below the meeting line.
    assert np.all(out[2, [50, 51, 52], 1] < out[2, [61, 62, 63], 1])
    assert np.all(out[2, [58, 57, 56], 1] > out[2, [67, 66, 65], 1])


def test_lip_width_and_rounding():
    out = face.articulate(face.mean_shape(), *_frames(3, lip_width=[-1.0, 0.0, 1.0]))
    width = out[:, 54, 0] - out[:, 48, 0]
    assert width[0] < width[1] < width[2]
    r = face.articulate(face.mean_shape(), *_frames(2, jaw_open=0.3, rounding=[0.0, 1.0]))
    outer = r[:, 54, 0] - r[:, 48, 0]
    assert outer[1] < 0.8 * outer[0]  # narrower
    assert r[1, 51, 2] > r[0, 51, 2] + 0.05 and r[1, 57, 2] > r[0, 57, 2] + 0.05  # protruded
    inner_w = r[:, 64, 0] - r[:, 60, 0]
    inner_h = r[:, 66, 1] - r[:, 62, 1]
    assert inner_w[0] / inner_h[0] > 2.5  # an open /a/-like slit ...
    assert 0.7 < inner_w[1] / inner_h[1] < 1.6  # ... becomes round


def test_expressions_move_the_right_points():
    m = face.mean_shape()
    smile = face.articulate(m, *_frames(3, smile=[-1.0, 0.0, 1.0]))
    corners = smile[:, [48, 54], 1].mean(axis=1)
    assert corners[2] < corners[1] - 0.03 < corners[0] - 0.06  # y down: a smile raises them
    assert smile[2, 54, 0] - smile[2, 48, 0] > smile[1, 54, 0] - smile[1, 48, 0]
    brows = face.articulate(m, *_frames(2, brow_raise=[0.0, 1.0]))
    assert np.all(brows[1, 17:27, 1] < brows[0, 17:27, 1] - 0.04)
    furrow = face.articulate(m, *_frames(2, brow_furrow=[0.0, 1.0]))
    assert furrow[1, 22, 0] - furrow[1, 21, 0] < furrow[0, 22, 0] - furrow[0, 21, 0] - 0.05


def test_eye_open_and_blink():
    m = face.mean_shape()
    upper, lower = [37, 38, 43, 44], [41, 40, 47, 46]
    out = face.articulate(m, *_frames(5, eye_open=[-1.0, 0.0, 1.0, 0.0, 1.0], blink=[0, 0, 0, 1.0, 1.0]))
    opening = (out[:, lower, 1] - out[:, upper, 1]).mean(axis=1)
    assert opening[0] < opening[1] < opening[2]
    assert opening[0] > 0.02  # narrowed, not closed
    np.testing.assert_allclose(out[3:, upper], out[3:, lower], atol=1e-9)  # blink=1: lids meet
    np.testing.assert_allclose(out[:, [36, 39, 42, 45]], np.broadcast_to(m[[36, 39, 42, 45]], (5, 4, 3)), atol=1e-12)


def test_articulate_rejects_bad_shapes():
    m = face.mean_shape()
    with pytest.raises(ValueError, match="neutral"):
        face.articulate(m[:60], *_frames(2))
    with pytest.raises(ValueError, match="visemes"):
        face.articulate(m, np.zeros((2, 3)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="same number of frames"):
        face.articulate(m, np.zeros((2, 4)), np.zeros((3, 5)))


def test_euler_to_rotation_matches_scipy_and_the_documented_signs():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-1.0, 1.0, (20, 3))
    r = face.euler_to_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
    expected = Rotation.from_euler("YXZ", angles).as_matrix()
    np.testing.assert_allclose(r, expected, atol=1e-12)
    np.testing.assert_allclose(r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    nose = np.array([0.0, 0.0, 1.0])
    assert (face.euler_to_rotation(0.3, 0.0, 0.0) @ nose)[0] > 0  # yaw: nose to image right
    assert (face.euler_to_rotation(0.0, 0.3, 0.0) @ nose)[1] < 0  # pitch: nose up
    assert (face.euler_to_rotation(0.0, 0.0, 0.3) @ np.array([1.0, 0.0, 0.0]))[1] > 0  # roll: clockwise


def test_apply_pose_is_a_rigid_motion():
    rng = np.random.default_rng(1)
    pts = face.articulate(face.mean_shape(), *_frames(4, jaw_open=0.5))
    rot = Rotation.random(4, random_state=2).as_matrix()
    tr = rng.normal(size=(4, 3))
    out = face.apply_pose(pts, rot, tr)
    for t in range(4):
        np.testing.assert_allclose(out[t], np.array([rot[t].dot(p) + tr[t] for p in pts[t]]), atol=1e-12)
    d_in = np.linalg.norm(pts[:, :, None] - pts[:, None], axis=-1)
    d_out = np.linalg.norm(out[:, :, None] - out[:, None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, atol=1e-12)
    # Rotation about the origin (the pivot) keeps every point's distance to it.
    out0 = face.apply_pose(pts, rot, np.zeros((4, 3)))
    np.testing.assert_allclose(np.linalg.norm(out0, axis=-1), np.linalg.norm(pts, axis=-1), atol=1e-12)
    with pytest.raises(ValueError, match="rotation"):
        face.apply_pose(pts, rot[:3], tr)
    with pytest.raises(ValueError, match="translation"):
        face.apply_pose(pts, rot, tr[:, :2])


def test_project_matches_a_homogeneous_pinhole():
    cam = face.Camera()
    size = 128
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1.5, 1.5, (2, 68, 3))
    f = cam.focal * size
    c = (size - 1) / 2
    k = np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    # World to camera: camera at (0, look_y, distance) looking down -z with y down, i.e. a
    # camera frame (x, y, -z) relative to its centre.
    extrinsic = np.diag([1.0, 1.0, -1.0])
    centre = np.array([0.0, cam.look_y, cam.distance])
    cam_pts = (pts - centre) @ extrinsic.T
    h = cam_pts @ k.T
    expected = h[..., :2] / h[..., 2:]
    np.testing.assert_allclose(face.project(pts, size), expected, atol=1e-9)
    assert face.project(np.array([[0.0, cam.look_y, 0.0]]), size) == pytest.approx(np.array([[c, c]]))


def test_default_framing_is_a_face_centred_crop():
    for size in (64, 128, 256):
        p = face.project(face.mean_shape()[None], size)[0]
        assert 0.45 <= (p[16, 0] - p[0, 0]) / size <= 0.55
        centre = 0.5 * (p.min(axis=0) + p.max(axis=0))
        np.testing.assert_allclose(centre, (size - 1) / 2, atol=0.01 * size)


def test_landmarks_stay_inside_the_image_over_the_pose_range():
    size = 128
    identities = [np.zeros(5)] + [3.0 * np.array(s) for s in itertools.product([-1, 1], repeat=5)]
    vis = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [1, -1, 1, 0]])
    expr = np.array([[1, 0, 1, 1, 0], [-1, 1, -1, -1, 1], [0, 0, 0, 0, 0]])
    angles = np.deg2rad(np.array(list(itertools.product([-35, 0, 35], [-25, 0, 25], [-20, 0, 20]))))
    shifts = np.array([[x, y, 0.0] for x in (-0.15, 0.15) for y in (-0.15, 0.15)])
    rot = face.euler_to_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
    worst = np.inf
    for identity in identities:
        pts = face.articulate(face.identity_shape(identity), vis, expr)
        for shift in shifts:
            n = len(rot) * len(pts)
            rots = np.repeat(rot, len(pts), 0)
            posed = face.apply_pose(np.tile(pts, (len(rot), 1, 1)), rots, np.tile(shift, (n, 1)))
            p = face.project(posed, size)
            worst = min(worst, p.min(), size - 1 - p.max())
    assert worst > 2.0


def test_project_rejects_bad_input():
    with pytest.raises(ValueError, match="image_size"):
        face.project(np.zeros((1, 68, 3)), 16)
    with pytest.raises(ValueError, match="points_world"):
        face.project(np.zeros((1, 68, 2)), 64)
    with pytest.raises(ValueError, match="behind the camera"):
        face.project(np.full((1, 68, 3), 20.0), 64)
    with pytest.raises(ValueError, match="distance"):
        face.Camera(distance=1.0)
