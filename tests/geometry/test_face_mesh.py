"""The landmark face mesh and the ani render, checked against SynthTalk's own geometry, camera and
renderer (numpy, independent of the code under test)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.path import Path
from scipy.spatial import ConvexHull

from data_pipelines.synthtalk import face, render
from macl_jax.geometry import face_mesh as fm
from macl_jax.geometry.raster import rasterize
from macl_jax.geometry.resample import warp

S = 48  # image size of every render here
_CAM = face.Camera()
PINHOLE = fm.Pinhole(_CAM.focal_px(S), _CAM.center_px(S), _CAM.center_px(S), _CAM.distance, _CAM.look_y)
# The mirror image of each of the 83 mesh points: iBUG's, and forehead point 68 + k <-> 82 - k.
MIRROR_83 = np.concatenate([face.MIRROR, 82 - np.arange(15)])


def _pose(yaw, pitch=0.0, roll=0.0, t=(0.0, 0.0, 0.0)):
    r = face.euler_to_rotation(*np.deg2rad([yaw, pitch, roll])).astype(np.float32)
    return r, np.asarray(t, np.float32)


def _area2(xy, triangles):
    a, b, c = (xy[..., triangles[:, k], :] for k in range(3))
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (c[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1])


def _local_face(jaw_open=0.3, seed=None):
    ident = np.zeros(5) if seed is None else np.random.default_rng(seed).uniform(-2.5, 2.5, 5)
    return face.articulate(face.identity_shape(ident), np.array([[jaw_open, 0.2, 0.0, 0.0]]), np.zeros((1, 5)))[0]


@functools.lru_cache(maxsize=None)
def _scene(jaw_open=0.3):
    """One face at three head poses, rendered by SynthTalk: frames in [0, 1], posed 3-D
    landmarks, their projections, and the poses."""
    local = _local_face(jaw_open)
    poses = [_pose(0), _pose(18, 6, -5, (0.05, 0.02, 0.0)), _pose(-20, -8, 6)]
    rot = np.stack([p[0] for p in poses])
    trans = np.stack([p[1] for p in poses])
    appearance = render.sample_appearance(np.random.default_rng(3))
    frames = render.render_frames(np.stack([local] * 3), rot, trans, appearance, S).astype(np.float32) / 255.0
    posed = face.apply_pose(np.stack([local] * 3), rot, trans).astype(np.float32)
    return frames, posed, face.project(posed, S), poses


def _ani(ref, tgt, *, jaw_open=0.3, **kwargs):
    frames, posed, _, poses = _scene(jaw_open)
    return fm.render_ani(frames[ref], posed[ref], *poses[ref], *poses[tgt], PINHOLE, **kwargs)


def test_forehead_mirrors_jaw_points_15_to_1():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2, 68, 3))
    out = fm.add_forehead(points)
    assert out.shape == (2, 83, 3)
    np.testing.assert_array_equal(out[:, :68], points)
    base = 0.5 * (points[:, 0, 1] + points[:, 16, 1])
    for k, j in enumerate(range(15, 0, -1)):
        np.testing.assert_allclose(out[:, 68 + k, 1], base + (base - points[:, j, 1]) * 2 / 3)
        np.testing.assert_array_equal(out[:, 68 + k, [0, 2]], points[:, j, [0, 2]])
    np.testing.assert_allclose(np.asarray(fm.add_forehead(jnp.asarray(points, jnp.float32))), out, atol=1e-5)
    assert fm.add_forehead(points[..., :2]).shape == (2, 83, 2)


def test_triangulation_is_a_symmetric_front_facing_sheet_with_a_mouth_hole():
    tri = fm.FACE_TRIANGLES
    assert tri.shape == (126, 3) and tri.min() == 0 and tri.max() == 82
    directed = {}
    for t in tri:
        for i in range(3):
            directed[(int(t[i]), int(t[(i + 1) % 3]))] = directed.get((int(t[i]), int(t[(i + 1) % 3])), 0) + 1
    assert max(directed.values()) == 1  # consistent orientation: no directed edge twice
    boundary = {e for e in directed if (e[1], e[0]) not in directed}
    undirected = {frozenset(e) for e in boundary}
    rim = list(fm.RIM_INDICES)
    lip = list(range(60, 68))
    loops = {frozenset((a, b)) for loop in (rim, lip) for a, b in zip(loop, loop[1:] + loop[:1])}
    assert undirected == loops  # the outline and the inner lip line are the only boundaries
    edges = {frozenset(e) for e in directed}
    assert 83 - len(edges) + len(tri) == 0  # Euler characteristic of a disc with one hole
    assert not any(set(t) <= set(lip) for t in tri.tolist())  # nothing spans the mouth opening
    mirrored = {tuple(np.roll(m, -int(np.argmin(m)))) for m in MIRROR_83[tri][:, ::-1]}
    assert mirrored == {tuple(t) for t in tri.tolist()}
    frontal = face.project(fm.add_forehead(face.mean_shape())[None], S)[0]
    assert (_area2(frontal, tri) > 0).all()


def test_subdivision_splits_every_triangle_in_four_on_the_same_surface():
    local = _local_face(0.5).astype(np.float32)
    for level in range(1, fm.MAX_LEVEL + 1):
        tri = fm.mesh_triangles(level)
        verts = fm.mesh_vertices(local, level)
        assert tri.shape == (126 * 4**level, 3) and tri.max() == len(verts) - 1
        # Shared edges share their midpoint: the sheet stays watertight with one boundary per loop.
        directed = {(int(t[i]), int(t[(i + 1) % 3])) for t in tri for i in range(3)}
        assert len(directed) == 3 * len(tri)
        assert sum((b, a) not in directed for a, b in directed) == 40 * 2**level
        # Midpoints of a perspective projection are not projections of midpoints, so compare in the
        # frontal orthographic view, where subdivision must preserve area and orientation exactly.
        xy = fm.mesh_vertices(local[:, :2], level)
        areas = _area2(xy, tri)
        assert (areas > 0).all()
        base = _area2(fm.add_forehead(local[:, :2]), fm.FACE_TRIANGLES).sum()
        np.testing.assert_allclose(areas.sum(), base, rtol=1e-5)
    in_jax = np.asarray(fm.mesh_vertices(jnp.asarray(local), 2))
    np.testing.assert_allclose(in_jax, fm.mesh_vertices(local, 2), atol=1e-5)


def test_own_pose_render_reproduces_the_reference():
    frames = _scene()[0]
    exact = _ani(0, 0, colours="texture")
    mask = np.asarray(exact.mask)
    assert mask.sum() > 400  # the face region at 48 px
    # Texture lookup at the own pose samples the reference at (almost exactly) integer pixels.
    np.testing.assert_allclose(np.asarray(exact.image)[mask], frames[0][mask], atol=1e-4)
    np.testing.assert_allclose(np.asarray(exact.flow), 0.0, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(exact.flow_mask), mask)
    assert np.all(np.asarray(exact.image)[~mask] == 0.0)  # the background value
    # Vertex colours hold the image only at ~1100 vertices (about 1.5 px apart at this size), so
    # detail between them is smoothed away: a mean error of a few percent of the range.
    vertex = _ani(0, 0)
    error = np.abs(np.asarray(vertex.image) - frames[0])[mask]
    assert error.mean() < 0.04
    np.testing.assert_array_equal(np.asarray(vertex.mask), mask)


def test_rotated_pose_puts_landmarks_where_the_rigid_transform_does():
    _, posed, projected, _ = _scene()
    for ref, tgt in ((0, 1), (2, 1), (1, 2)):
        out = _ani(ref, tgt, colours="texture")
        # SynthTalk projects the same articulated face at the target pose with its own camera.
        np.testing.assert_allclose(np.asarray(out.landmarks), projected[tgt], atol=2e-3)
        moved = np.abs(projected[tgt] - projected[ref]).max()
        assert moved > 3.0  # the check above would notice a render at the wrong pose


@pytest.mark.parametrize("landmark", [30, 39, 42, 48, 54, 19])
def test_flow_maps_a_target_landmark_pixel_to_the_reference_landmark(landmark):
    frames, posed, projected, poses = _scene()
    rot, _ = _pose(16, -8, 4)
    # Shift the target so the landmark lands exactly on a pixel centre: the flow there is then
    # the displacement of that very surface point, with no interpolation between pixels.
    x, y = projected[1][landmark]
    target_px = np.round([x, y])
    local = face.apply_pose(posed[:1], poses[0][0].T[None], (-poses[0][0].T @ poses[0][1])[None])[0]
    point = rot @ local[landmark]
    depth = _CAM.distance - point[2]
    want_x = (target_px[0] - PINHOLE.center_x) * depth / PINHOLE.focal_px
    want_y = (target_px[1] - PINHOLE.center_y) * depth / PINHOLE.focal_px + _CAM.look_y
    trans = np.array([want_x - point[0], want_y - point[1], 0.0], np.float32)
    out = fm.render_ani(frames[0], posed[0], *poses[0], rot, trans, PINHOLE)
    col, row = int(target_px[0]), int(target_px[1])
    np.testing.assert_allclose(np.asarray(out.landmarks)[landmark], target_px, atol=1e-3)
    assert bool(out.flow_mask[row, col])
    np.testing.assert_allclose(target_px + np.asarray(out.flow)[row, col], projected[0][landmark], atol=2e-3)


def test_ani_is_closer_to_the_target_frame_than_the_reference_is():
    frames = _scene()[0]
    out = _ani(0, 1, colours="texture")
    valid = np.asarray(out.flow_mask)
    ani_error = np.abs(np.asarray(out.image) - frames[1])[valid].mean()
    copy_error = np.abs(frames[0] - frames[1])[valid].mean()
    # SynthTalk shades the face from a fixed light, so even a perfect re-posing keeps some error.
    assert ani_error < 0.75 * copy_error
    # The ground-truth flow pulls the reference into the same place as the render.
    pulled = np.asarray(warp(jnp.asarray(frames[:1]), out.flow[None]))[0]
    np.testing.assert_allclose(pulled[valid], np.asarray(out.image)[valid], atol=1e-5)


def test_flow_mask_drops_points_the_reference_hides():
    # Reference turned 30 degrees: part of the far cheek is behind the nose there. At the own
    # pose nothing is hidden; at the frontal target some covered pixels must be flagged.
    frames, posed, _, poses = _scene()
    rot, trans = _pose(30)
    local = face.apply_pose(posed[:1], poses[0][0].T[None], (-poses[0][0].T @ poses[0][1])[None])[0]
    turned = face.apply_pose(local[None], rot[None], trans[None])[0]
    out = fm.render_ani(frames[0], turned, rot, trans, *poses[0], PINHOLE)
    mask, valid = np.asarray(out.mask), np.asarray(out.flow_mask)
    assert (valid <= mask).all() and (mask & ~valid).sum() >= 3
    # Positive yaw turns the nose toward image right, hiding the cheek on that side behind it.
    hidden_cols = np.nonzero(mask & ~valid)[1]
    assert np.median(hidden_cols) > np.asarray(out.landmarks)[30, 0]


def test_open_mouth_is_a_hole_showing_the_background():
    out = _ani(0, 0, jaw_open=1.0, background=-1.0)
    lips = _scene(1.0)[2][0][60:68]
    rows, cols = np.mgrid[:S, :S]
    pixels = np.stack([cols.ravel(), rows.ravel()], -1)
    inner = Path(lips).contains_points(pixels, radius=-1.0).reshape(S, S)  # 0.5 px inside the lips
    assert inner.sum() >= 4
    assert not np.asarray(out.mask)[inner].any()
    assert np.all(np.asarray(out.image)[inner] == -1.0)


def test_interior_triangles_keep_their_orientation_over_the_pose_range():
    # A mesh whose rim is the face outline has rim triangles nearly edge-on to the camera: those
    # turn their back at modest rotations (the z-buffer hides them behind the front). Away from
    # the rim and the lips they must not, for varied identities and expressions.
    rng = np.random.default_rng(1)
    rim = np.isin(fm.FACE_TRIANGLES, fm.RIM_INDICES).any(axis=1)
    mouth = np.isin(fm.FACE_TRIANGLES, np.arange(48, 68)).any(axis=1)
    yaw, pitch, roll = np.meshgrid(np.linspace(-30, 30, 7), np.linspace(-20, 20, 5), [-15.0, 0.0, 15.0], indexing="ij")
    rotations = face.euler_to_rotation(*np.deg2rad([yaw.ravel(), pitch.ravel(), roll.ravel()]))
    for k in range(6):
        vis = rng.uniform(0, 1, (1, 4)) * [1, 2, 1, 1] - [0, 1, 0, 0]
        expr = rng.uniform(0, 1, (1, 5)) * [2, 1, 2, 2, 1] - [1, 0, 1, 1, 0]
        local = fm.add_forehead(face.articulate(face.identity_shape(rng.uniform(-2.5, 2.5, 5)), vis, expr)[0])
        xy = face.project(np.einsum("pij,nj->pni", rotations, local), S)
        areas = _area2(xy, fm.FACE_TRIANGLES)
        small_yaw = np.abs(yaw.ravel()) <= 20
        assert (areas[small_yaw][:, ~rim & ~mouth] > 0).all()  # eyes, brows, nose, cheeks
    # The neutral mean face, turning only: everything but the rim, lips included, stays front-facing.
    neutral = fm.add_forehead(face.mean_shape())
    turns = face.euler_to_rotation(np.deg2rad(np.linspace(-30, 30, 13)), 0.0, 0.0)
    areas = _area2(face.project(np.einsum("pij,nj->pni", turns, neutral), S), fm.FACE_TRIANGLES)
    assert (areas[:, ~rim] > 0).all()


def test_the_render_covers_the_central_face_over_the_pose_range():
    # Pixels inside the hull of nose, eyes and lips (minus the mouth opening) are drawn at the
    # corners of SynthTalk's pose range: double-sided triangles and the z-buffer leave no hole.
    # At 30 degrees of yaw with 20 of pitch the far eye corner reaches the mesh's silhouette and
    # the hull pokes past it by a pixel or two, hence the 95 % there.
    rows, cols = np.mgrid[:S, :S]
    pixels = np.stack([cols.ravel(), rows.ravel()], -1)
    local = fm.mesh_vertices(_local_face(0.4, seed=2).astype(np.float32), 0)
    for yaw in (-30, -20, 20, 30):
        for pitch in (-20, 20):
            rot, _ = _pose(yaw, pitch, 15)
            xy, depth = PINHOLE.project(jnp.asarray(local @ rot.T))
            screen = jnp.concatenate([xy, depth[:, None]], -1)
            raster = rasterize(screen, fm.FACE_TRIANGLES, S, S, perspective_correct=True)
            lm = np.asarray(xy)[:68]
            region = Path(lm[27:60][ConvexHull(lm[27:60]).vertices]).contains_points(pixels, radius=-1.0)
            region &= ~Path(lm[60:68]).contains_points(pixels, radius=1.0)
            covered = np.asarray(raster.mask).ravel()[region]
            assert region.sum() > 50
            assert covered.mean() >= (1.0 if abs(yaw) <= 20 else 0.95), (yaw, pitch)


def test_batched_render_with_per_sample_crops_equals_per_sample_renders():
    # As in training: each frame has its own crop affine, traced and batched inside the camera.
    frames, posed, _, poses = _scene()
    rot = np.stack([p[0] for p in poses[:2]])
    trans = np.stack([p[1] for p in poses[:2]])
    affines = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.9, 0.0, 2.5], [0.0, 0.9, 1.5]]], np.float32)

    def render(image, lm, r_ref, t_ref, r_tgt, t_tgt, affine):
        return fm.render_ani(image, lm, r_ref, t_ref, r_tgt, t_tgt, fm.Transformed(PINHOLE, affine))

    batched = jax.vmap(render)(frames[:2], posed[:2], rot, trans, rot[::-1], trans[::-1], affines)
    for b in range(2):
        camera = fm.Transformed(PINHOLE, affines[b])
        one = fm.render_ani(frames[b], posed[b], rot[b], trans[b], rot[1 - b], trans[1 - b], camera)
        np.testing.assert_array_equal(np.asarray(batched.mask[b]), np.asarray(one.mask))
        np.testing.assert_allclose(np.asarray(batched.image[b]), np.asarray(one.image), atol=1e-5)
        np.testing.assert_allclose(np.asarray(batched.flow[b]), np.asarray(one.flow), atol=1e-4)
    assert not np.array_equal(np.asarray(batched.mask[0]), np.asarray(batched.mask[1]))


def test_reference_camera_places_the_reference_in_its_own_crop():
    # The reference image is the frame moved by (+3, -2) px, as a crop would move it: with that
    # shift as the reference camera's affine the render lands back on the frame exactly, and the
    # flow is the shift.
    frames, posed, projected, poses = _scene()
    shifted = np.zeros_like(frames[0])
    shifted[: S - 2, 3:] = frames[0][2:, : S - 3]
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]], np.float32)
    camera = fm.Transformed(PINHOLE, shift)
    out = fm.render_ani(shifted, posed[0], *poses[0], *poses[0], PINHOLE, reference_camera=camera, colours="texture")
    mask = np.asarray(out.mask)
    assert mask.sum() > 400
    np.testing.assert_allclose(np.asarray(out.image)[mask], frames[0][mask], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.flow)[mask], np.broadcast_to([3.0, -2.0], (mask.sum(), 2)), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(out.flow_mask), mask)
    np.testing.assert_allclose(np.asarray(out.landmarks), projected[0], atol=1e-3)  # in the target's pixels


def test_project_at_pose_stays_in_numpy_for_data_pipelines():
    _, posed, projected, poses = _scene()
    moved = fm.project_at_pose(posed[0], poses[0], poses[1], PINHOLE)
    assert isinstance(moved, np.ndarray)
    np.testing.assert_allclose(moved, projected[1], atol=1e-3)
    affine = np.array([[2.0, 0.0, -5.0], [0.0, 2.0, 1.0]])
    cropped = fm.project_at_pose(posed[2], poses[2], poses[1], fm.Transformed(PINHOLE, affine))
    assert isinstance(cropped, np.ndarray)
    np.testing.assert_allclose(cropped, projected[1] * 2.0 + [-5.0, 1.0], atol=2e-3)
    rendered = _ani(2, 1, colours="texture").landmarks
    np.testing.assert_allclose(np.asarray(rendered), fm.project_at_pose(posed[2], poses[2], poses[1], PINHOLE), atol=1e-3)


def test_orthographic_camera_takes_pixel_landmarks():
    # Landmarks already in pixels with a depth (as 3-D detectors give them): identity projection.
    frames, posed, projected, poses = _scene()
    pixels = np.concatenate([projected[0], posed[0][:, 2:] * 10.0], -1).astype(np.float32)
    eye, zero = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    out = fm.render_ani(frames[0], pixels, eye, zero, eye, zero, fm.Orthographic(), colours="texture")
    mask = np.asarray(out.mask)
    assert mask.sum() > 400
    np.testing.assert_allclose(np.asarray(out.image)[mask], frames[0][mask], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.landmarks), projected[0], atol=1e-4)


def test_mouth_box_and_its_mask():
    lm = np.zeros((68, 2), np.float32) + 100.0
    lm[[48, 50, 51, 54, 57]] = [[90, 150], [100, 140], [110, 141], [130, 151], [111, 170]]
    lm[60:68] = [120, 200]  # points outside the five do not count
    np.testing.assert_allclose(fm.mouth_box(lm, 256, 256), [85, 135, 135, 175])
    np.testing.assert_allclose(fm.mouth_box(lm, 160, 128), [87.5, 136.875, 127, 159])  # scaled margin, clamped
    mask = fm.mouth_box_mask(lm, 256, 256)
    want = np.zeros((256, 256), bool)
    want[135:176, 85:136] = True
    np.testing.assert_array_equal(mask, want)
    # Batched and in jax.
    batch = np.stack([lm, lm + [10, -20]])[None]
    in_jax = np.asarray(fm.mouth_box_mask(jnp.asarray(batch), 256, 256))
    np.testing.assert_array_equal(in_jax, fm.mouth_box_mask(batch, 256, 256))
    assert fm.mouth_box_mask(batch, 64, 32).shape == (1, 2, 64, 32)
    # It covers every mouth landmark of SynthTalk faces, open or closed, at every pose.
    for jaw_open in (0.0, 1.0):
        projected = _scene(jaw_open)[2]
        box = fm.mouth_box_mask(projected, S, S)
        for k in range(3):
            px = np.round(projected[k][48:68]).astype(int)
            assert box[k][px[:, 1], px[:, 0]].all()


def test_bad_inputs_are_refused():
    frames, posed, _, poses = _scene()
    r, t = poses[0]
    with pytest.raises(ValueError, match="68, 3"):
        fm.render_ani(frames[0], posed[0][:, :2], r, t, r, t, PINHOLE)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        fm.render_ani(frames[:1], posed[0], r, t, r, t, PINHOLE)
    with pytest.raises(ValueError, match="target pose"):
        fm.render_ani(frames[0], posed[0], r, t, r[0], t, PINHOLE)
    with pytest.raises(ValueError, match="colours"):
        fm.render_ani(frames[0], posed[0], r, t, r, t, PINHOLE, colours="uv")
    with pytest.raises(ValueError, match="level"):
        fm.render_ani(frames[0], posed[0], r, t, r, t, PINHOLE, level=4)
    with pytest.raises(ValueError, match="camera"):
        fm.render_ani(frames[0], posed[0], r, t, r, t, face.Camera())
    with pytest.raises(ValueError, match="reference_camera"):
        fm.render_ani(frames[0], posed[0], r, t, r, t, PINHOLE, reference_camera=object())
    with pytest.raises(ValueError, match="background"):
        fm.render_ani(frames[0], posed[0], r, t, r, t, PINHOLE, background=np.zeros(2))
    with pytest.raises(ValueError, match="68, 2 or 3"):
        fm.add_forehead(np.zeros((67, 3)))
    with pytest.raises(ValueError, match="68, 2"):
        fm.mouth_box(np.zeros((68, 3)), 64, 64)
    with pytest.raises(ValueError, match="level"):
        fm.mesh_triangles(-1)
