"""A face mesh from 68 3-D landmarks and the Rhythmic Head Motion "ani" render (its 3D-aware module).

The paper reconstructs a dense face mesh of the reference frame (PRNet), renders it at the target
frame's head pose with the reference's colours, and lets the generator warp that "ani" image with
a learned flow. Without PRNet weights the mesh here is built from the 68 iBUG landmarks plus 15
forehead points, triangulated once (`FACE_TRIANGLES`) and optionally refined by midpoint
subdivision so that per-vertex colours can be dense. Decisions and their reasons:
docs/rhm_3d_aware.md#decisions.

Frames: landmarks are posed 3-D points, `posed = R @ local + t` (SynthTalk's `landmarks_3d` with
`head_rotation`, `head_translation`; real data with its rigid fit). The mesh is built in the
face-local frame (x to image right, y down, z toward the camera at the identity pose), posed at
the reference or target pose, and projected by a camera description: `Pinhole` (SynthTalk) or
`Orthographic` (landmarks already in pixels, or weak perspective), optionally followed by a
crop's pixel affine (`Transformed`). Pixel coordinates are (x, y) = (column, row) with pixel
centres at integers, as everywhere in the package.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.geometry._backend import namespace
from macl_jax.geometry.camera import (
    MOUTH_BOX_INDICES,
    Camera,
    Orthographic,
    Pinhole,
    Transformed,
    check_camera,
    mouth_box,
    mouth_box_mask,
    project_at_pose,
)
from macl_jax.geometry.forehead import FOREHEAD_JAW_INDICES, NUM_FACE_POINTS, add_forehead
from macl_jax.geometry.raster import interpolate, rasterize
from macl_jax.geometry.resample import bilinear_sample
from macl_jax.geometry.rigid import apply_rigid, unapply_rigid

__all__ = [
    "FACE_TRIANGLES",
    "FOREHEAD_JAW_INDICES",
    "MAX_LEVEL",
    "MOUTH_BOX_INDICES",
    "NUM_MESH_POINTS",
    "RIM_INDICES",
    "AniRender",
    "Orthographic",
    "Pinhole",
    "Transformed",
    "add_forehead",
    "mesh_triangles",
    "mesh_vertices",
    "mouth_box",
    "mouth_box_mask",
    "project_at_pose",
    "render_ani",
]

NUM_MESH_POINTS = NUM_FACE_POINTS  # the 68 landmarks and the 15 forehead points (geometry/forehead.py)
# The face outline (jaw, then forehead back toward point 0): the mesh boundary.
RIM_INDICES: tuple[int, ...] = tuple(range(17)) + tuple(range(68, 83))
MAX_LEVEL = 3

# The fixed triangulation of the 83 points: 126 triangles, mirror-symmetric (left/right), each
# front-facing ((b - a) x (c - a) > 0 in pixel coordinates, y down) at the identity pose. Built
# once on the frontal SynthTalk mean face with the jaw half open: Delaunay, then the lips replaced
# by two fixed strips between the outer (48-59) and inner (60-67) lip lines, then edge flips
# that keep triangles from turning edge-on too early under head rotation, then mirrored. The
# inner-lip polygon 60-67 is a hole: the mouth opening shows the background, not stretched lips.
FACE_TRIANGLES = np.array(
    [
        (0, 17, 36), (0, 36, 1), (0, 82, 17), (1, 36, 41), (1, 41, 2), (2, 31, 49), (2, 40, 31),
        (2, 41, 40), (2, 48, 3), (2, 49, 48), (3, 48, 4), (4, 48, 5), (5, 48, 59), (5, 59, 6),
        (6, 58, 7), (6, 59, 58), (7, 57, 8), (7, 58, 57), (8, 57, 9), (9, 56, 10), (9, 57, 56),
        (10, 55, 11), (10, 56, 55), (11, 54, 12), (11, 55, 54), (12, 54, 13), (13, 54, 14), (14, 35, 47),
        (14, 46, 15), (14, 47, 46), (14, 53, 35), (14, 54, 53), (15, 45, 16), (15, 46, 45), (16, 26, 68),
        (16, 45, 26), (17, 18, 37), (17, 37, 36), (17, 81, 18), (17, 82, 81), (18, 19, 37), (18, 80, 19),
        (18, 81, 80), (19, 20, 37), (19, 78, 20), (19, 79, 78), (19, 80, 79), (20, 21, 39), (20, 38, 37),
        (20, 39, 38), (20, 77, 21), (20, 78, 77), (21, 22, 27), (21, 27, 39), (21, 75, 22), (21, 76, 75),
        (21, 77, 76), (22, 23, 42), (22, 42, 27), (22, 73, 23), (22, 74, 73), (22, 75, 74), (23, 24, 44),
        (23, 43, 42), (23, 44, 43), (23, 72, 24), (23, 73, 72), (24, 25, 44), (24, 70, 25), (24, 71, 70),
        (24, 72, 71), (25, 26, 44), (25, 69, 26), (25, 70, 69), (26, 45, 44), (26, 69, 68), (27, 28, 39),
        (27, 42, 28), (28, 29, 39), (28, 42, 29), (29, 30, 40), (29, 40, 39), (29, 42, 47), (29, 47, 30),
        (30, 31, 40), (30, 32, 31), (30, 33, 32), (30, 34, 33), (30, 35, 34), (30, 47, 35), (31, 32, 50),
        (31, 50, 49), (32, 33, 50), (33, 34, 52), (33, 51, 50), (33, 52, 51), (34, 35, 52), (35, 53, 52),
        (36, 37, 41), (37, 38, 40), (37, 40, 41), (38, 39, 40), (42, 43, 47), (43, 44, 47), (44, 45, 46),
        (44, 46, 47), (48, 49, 60), (48, 60, 59), (49, 50, 61), (49, 61, 60), (50, 51, 62), (50, 62, 61),
        (51, 52, 62), (52, 53, 63), (52, 63, 62), (53, 54, 64), (53, 64, 63), (54, 55, 64), (55, 56, 65),
        (55, 65, 64), (56, 57, 66), (56, 66, 65), (57, 58, 66), (58, 59, 67), (58, 67, 66), (59, 60, 67),
    ],
    dtype=np.int32,
)  # fmt: skip
FACE_TRIANGLES.setflags(write=False)

# Reference visibility: a surface point counts as hidden in the reference view when the
# reference z-buffer at its pixel is nearer by more than this fraction of the mesh's depth extent
# (about 4 mm on a face; coarser than the depth step of a steep triangle across one pixel).
_OCCLUSION_TOLERANCE = 0.05
# The reference code's mouth-box margin, in pixels of a 256-px image.


@functools.lru_cache(maxsize=None)
def _subdivision(level: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Triangles after `level` midpoint subdivisions, and per level the (E, 2) vertex pairs whose
    midpoints are appended (in order) to that level's vertices."""
    triangles = FACE_TRIANGLES
    num_vertices = NUM_MESH_POINTS
    pairs_per_level = []
    for _ in range(level):
        edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = num_vertices + inverse.reshape(3, -1)  # midpoints of edges ab, bc, ca per triangle
        ab, bc, ca = mid
        a, b, c = triangles.T
        # Four children with the parent's orientation; shared edges share their midpoint vertex.
        triangles = np.concatenate(
            [np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
        ).astype(np.int32)
        pairs_per_level.append(unique.astype(np.int32))
        num_vertices += len(unique)
    triangles.setflags(write=False)
    return triangles, tuple(pairs_per_level)


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"subdivision level must be an int in [0, {MAX_LEVEL}], got {level!r}.")


def mesh_triangles(level: int = 0) -> np.ndarray:
    """(F, 3) int32 triangles of the face mesh after `level` midpoint subdivisions (126 * 4**level)."""
    _check_level(level)
    return _subdivision(int(level))[0]


def mesh_vertices(landmarks: Any, level: int = 0) -> Any:
    """(..., 68, C) landmarks -> (..., V, C) mesh vertices (forehead added, `level` subdivisions).

    Midpoints commute with rigid and orthographic maps but not with a perspective projection:
    build the mesh from 3-D points, then project. numpy or jax in, same out.
    """
    _check_level(level)
    xp = namespace(landmarks)
    v = add_forehead(landmarks)
    for pairs in _subdivision(int(level))[1]:
        v = xp.concatenate([v, 0.5 * (v[..., pairs[:, 0], :] + v[..., pairs[:, 1], :])], axis=-2)
    return v


# The cameras are pytrees under jit and vmap (registered here, where jax is loaded anyway): their
# numbers and a crop's affine may be traced or batched; `perspective` is a class constant.
for _camera_type in (Pinhole, Orthographic, Transformed):
    jax.tree_util.register_dataclass(_camera_type)


class AniRender(NamedTuple):
    """The reference face rendered at the target pose.

    image: (H, W, C) float32 reference colours, `background` where no triangle is drawn.
    mask: (H, W) bool, the mesh covers the pixel.
    flow: (H, W, 2) float32 target -> reference displacement in pixels (dx, dy): the covered
        target pixel p shows the reference's surface point at p + flow[p]; zero where not covered.
        `resample.warp(reference[None], flow[None])` pulls the reference into the target pose.
    flow_mask: (H, W) bool, covered, landing inside the reference image, and not hidden there
        by a nearer part of the mesh: where the flow is a valid correspondence.
    landmarks: (68, 2) float32 the reference's landmarks at the target pose, in pixels.
    """

    image: jax.Array
    mask: jax.Array
    flow: jax.Array
    flow_mask: jax.Array
    landmarks: jax.Array


def _check_pose(rotation: jax.Array, translation: jax.Array, name: str) -> None:
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise ValueError(
            f"render_ani({name}): expected rotation (3, 3) and translation (3,), got {rotation.shape} and "
            f"{translation.shape}; use jax.vmap for a batch."
        )


def render_ani(
    reference_image: jax.Array,
    reference_landmarks: jax.Array,
    reference_rotation: jax.Array,
    reference_translation: jax.Array,
    target_rotation: jax.Array,
    target_translation: jax.Array,
    camera: Camera,
    *,
    reference_camera: Camera | None = None,
    level: int = 2,
    colours: str = "vertex",
    background: float | jax.Array = 0.0,
    cull_backfaces: bool = False,
) -> AniRender:
    """Renders the reference frame's face mesh at the target head pose, coloured from the reference.

    reference_image (H, W, C); reference_landmarks (68, 3) posed, with posed = R_ref @ local + t_ref;
    rotations (3, 3), translations (3,). `camera` projects posed points onto the output (the target
    frame's pixels, H x W); `reference_camera` onto the reference image (default: the same camera;
    they differ when the two frames were cropped differently, see `Transformed`).
    colours="vertex" (the paper's choice) samples the reference image bilinearly at every vertex's
    reference-view position and interpolates across triangles; "texture" samples the reference at
    every pixel's corresponding reference position (sharper: no detail is lost between vertices).
    Triangles are drawn double-sided by default, as the paper's renderer does: the coarse mesh
    spans concave parts (beside the nose) with steep triangles that turn their back at large
    poses, and culling them would open holes in the face; the z-buffer already hides back faces
    behind front ones. One sample; use jax.vmap for a batch (cameras may be batched too).
    """
    image = jnp.asarray(reference_image, jnp.float32)
    landmarks = jnp.asarray(reference_landmarks, jnp.float32)
    r_ref, t_ref = jnp.asarray(reference_rotation, jnp.float32), jnp.asarray(reference_translation, jnp.float32)
    r_tgt, t_tgt = jnp.asarray(target_rotation, jnp.float32), jnp.asarray(target_translation, jnp.float32)
    if image.ndim != 3:
        raise ValueError(
            f"render_ani(reference_image): expected (H, W, C), got shape {image.shape}; use jax.vmap for a batch."
        )
    if landmarks.shape != (68, 3):
        raise ValueError(
            f"render_ani(reference_landmarks): expected (68, 3) posed 3-D landmarks, got shape {landmarks.shape}."
        )
    _check_pose(r_ref, t_ref, "reference pose")
    _check_pose(r_tgt, t_tgt, "target pose")
    if colours not in ("vertex", "texture"):
        raise ValueError(f"render_ani(colours): expected 'vertex' or 'texture', got {colours!r}.")
    reference_camera = camera if reference_camera is None else reference_camera
    check_camera(camera, "render_ani(camera)")
    check_camera(reference_camera, "render_ani(reference_camera)")
    _check_level(level)
    background = jnp.asarray(background, jnp.float32)
    if background.ndim > 1 or (background.ndim == 1 and background.shape[0] not in (1, image.shape[-1])):
        raise ValueError(
            f"render_ani(background): expected a scalar or ({image.shape[-1]},), got shape {background.shape}."
        )
    return _render_ani(
        image, landmarks, r_ref, t_ref, r_tgt, t_tgt, background, camera, reference_camera,
        int(level), colours, bool(cull_backfaces),
    )  # fmt: skip


# One compiled program per image shape and setting (the cameras are traced pytrees): called
# eagerly, the render would otherwise dispatch and compile its many small operations one by one.
@functools.partial(jax.jit, static_argnums=(9, 10, 11))
def _render_ani(
    image: jax.Array,
    landmarks: jax.Array,
    r_ref: jax.Array,
    t_ref: jax.Array,
    r_tgt: jax.Array,
    t_tgt: jax.Array,
    background: jax.Array,
    camera: Camera,
    reference_camera: Camera,
    level: int,
    colours: str,
    cull_backfaces: bool,
) -> AniRender:
    height, width, _ = image.shape
    local = mesh_vertices(unapply_rigid(landmarks, r_ref, t_ref), level)  # (V, 3) face-local
    triangles = mesh_triangles(level)
    ref_xy, ref_depth = reference_camera.project(apply_rigid(local, r_ref, t_ref))
    tgt_xy, tgt_depth = camera.project(apply_rigid(local, r_tgt, t_tgt))

    def draw(xy: jax.Array, depth: jax.Array, view: Camera):
        return rasterize(jnp.concatenate([xy, depth[:, None]], axis=-1), triangles, height, width,
                         cull_backfaces=cull_backfaces, perspective_correct=view.perspective)

    raster = draw(tgt_xy, tgt_depth, camera)
    mask = raster.mask

    # The surface point under each target pixel, seen from the reference: exact for the mesh
    # (barycentrics are perspective-correct under a pinhole, and the point is re-projected).
    point_ref, point_depth = reference_camera.project(apply_rigid(interpolate(local, raster), r_ref, t_ref))
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    pixels = jnp.stack([cols, rows], axis=-1)
    flow = jnp.where(mask[..., None], point_ref - pixels, 0.0)

    if colours == "vertex":
        vertex_colours = bilinear_sample(image[None], ref_xy[None, None, :, 0], ref_xy[None, None, :, 1])[0, 0]
        drawn = interpolate(vertex_colours, raster)
    else:
        drawn = bilinear_sample(image[None], point_ref[None, ..., 0], point_ref[None, ..., 1])[0]
    out = jnp.where(mask[..., None], drawn, jnp.broadcast_to(background, drawn.shape))

    # Hidden in the reference: the reference z-buffer at the point's pixel holds something nearer.
    ref_raster = draw(ref_xy, ref_depth, reference_camera)
    qx = jnp.round(point_ref[..., 0])
    qy = jnp.round(point_ref[..., 1])
    inside = (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
    qxi = jnp.clip(qx, 0, width - 1).astype(jnp.int32)
    qyi = jnp.clip(qy, 0, height - 1).astype(jnp.int32)
    tolerance = _OCCLUSION_TOLERANCE * (jnp.max(ref_depth) - jnp.min(ref_depth))
    seen = ref_raster.depth[qyi, qxi] <= point_depth + tolerance  # -inf (nothing drawn) passes
    flow_mask = mask & inside & seen

    target_landmarks = camera.project(apply_rigid(local[:68], r_tgt, t_tgt))[0]
    return AniRender(image=out, mask=mask, flow=flow, flow_mask=flow_mask, landmarks=target_landmarks)
