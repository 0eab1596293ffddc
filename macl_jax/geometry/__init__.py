"""Landmark geometry on 68-point iBUG landmarks (0-based: jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, outer lip 48-59, inner lip 60-67).

Pure numpy functions, batched over leading axes (a clip is (T, 68, C), a batch (B, T, 68, C)),
float64 inside and returned in the input float dtype. jax is never imported here, so the
package is safe in grain workers. Given jax arrays (or tracers), these switch to jax.numpy,
compute in the input dtype and are jit-traceable: everything in `procrustes`, `rigid` and
`mouth`, and `PCA.transform` / `PCA.inverse_transform`. `smoothing` and `fit_pca` are numpy only.
"""

from macl_jax.geometry.mouth import (
    INNER_LIP_INDICES,
    INNER_LIP_PAIRS,
    closed_mouth_frame,
    inner_lip_area,
    mouth_openness,
)
from macl_jax.geometry.pca import PCA, fit_pca
from macl_jax.geometry.procrustes import (
    ANCHOR_T_SHAPE_9,
    T_SHAPE_INDICES,
    Alignment2D,
    align_2d,
    dealign_2d,
    denormalise_scale,
    normalise_scale,
    rotation_2d,
)
from macl_jax.geometry.rigid import (
    STABLE_27_INDICES,
    apply_rigid,
    geodesic_angle,
    invert_rigid,
    kabsch,
    rigid_fit_3d,
    rotation_to_euler,
    rotation_to_rotvec,
    rotvec_to_rotation,
    unapply_rigid,
)
from macl_jax.geometry.smoothing import interpolate_gaps, savgol_smooth

__all__ = [
    "ANCHOR_T_SHAPE_9",
    "INNER_LIP_INDICES",
    "INNER_LIP_PAIRS",
    "PCA",
    "STABLE_27_INDICES",
    "T_SHAPE_INDICES",
    "Alignment2D",
    "align_2d",
    "apply_rigid",
    "closed_mouth_frame",
    "dealign_2d",
    "denormalise_scale",
    "fit_pca",
    "geodesic_angle",
    "inner_lip_area",
    "interpolate_gaps",
    "invert_rigid",
    "kabsch",
    "mouth_openness",
    "normalise_scale",
    "rigid_fit_3d",
    "rotation_2d",
    "rotation_to_euler",
    "rotation_to_rotvec",
    "rotvec_to_rotation",
    "savgol_smooth",
    "unapply_rigid",
]
