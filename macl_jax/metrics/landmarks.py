"""Landmark (LMD family, LVD) and head-pose (rotation distance) metrics (docs/decisions.md#d10-landmark-metrics).

Every function takes numpy or jax arrays (jit-traceable on jax input; string options must then be
static) with any leading batch axes in front of the time axis T. numpy input is computed in float64
and returned in the inputs' float dtype (float64 for integer pixel coordinates, e.g. raw dlib
output); jax input is computed in at least float32 (bf16/f16 are promoted) and returned in that dtype.

Frame masks: `valid` is a bool (or integer 0/1) array of shape (..., T) (broadcastable to it), True
where both the generated and the ground-truth frame have landmarks (EAT skips a frame when dlib
finds no face in either video). Invalid frames contribute nothing, whatever their coordinates hold
(NaN included); a clip with no valid frame (no valid frame pair for the velocity metrics) gives NaN.
Values are per clip, shape (...); a benchmark number is the mean over clips with a finite value
(EAT averages over the videos that produced at least one frame).

Landmarks are iBUG-68 points (0-based) in pixels of the evaluation crop: 256 x 256 aligned crops in
the EAT protocol and for this project (docs/decisions.md#d10-landmark-metrics).
These are metrics, not losses: the gradient of a Euclidean distance is undefined where it is 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from macl_jax.geometry._backend import namespace
from macl_jax.geometry.rigid import geodesic_angle, rotation_to_euler

NUM_POINTS = 68

# iBUG-68 regions (0-based, end exclusive), the imutils FACIAL_LANDMARKS_IDXS split that the
# ATVGnet and EAT scripts slice with. "right"/"left" are the subject's: 36-41 is the right eye,
# which appears on the image's left.
JAW = slice(0, 17)
RIGHT_EYEBROW = slice(17, 22)
LEFT_EYEBROW = slice(22, 27)
NOSE = slice(27, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)  # outer + inner lip, 20 points: the M-LMD / ATVGnet LMD set
INNER_MOUTH = slice(60, 68)
FACE = slice(0, 68)
IBUG68_REGIONS: dict[str, slice] = {
    "jaw": JAW,
    "right_eyebrow": RIGHT_EYEBROW,
    "left_eyebrow": LEFT_EYEBROW,
    "nose": NOSE,
    "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE,
    "mouth": MOUTH,
    "inner_mouth": INNER_MOUTH,
    "face": FACE,
}

_POINT_SETS = {"mouth": MOUTH, "face": FACE}


# ----------------------------------------------------------------------------- input handling


def _prepare(
    pred: Any, target: Any, valid: Any, fn: str, tail: tuple[int, ...], tail_text: str, min_frames: int = 1
) -> tuple[Any, Any, Any, Any, Any]:
    """Checks pred/target (..., T) + tail and valid (..., T).

    Returns (xp, pred, target, mask or None, result dtype), pred/target in the compute dtype.
    """
    xp = namespace(pred, target, valid)
    p, q = xp.asarray(pred), xp.asarray(target)
    for name, x in (("pred", p), ("target", q)):
        shape = tuple(x.shape)
        if len(shape) < len(tail) + 1 or shape[len(shape) - len(tail) :] != tail:
            raise ValueError(f"{fn}({name}): expected shape {tail_text}, got {shape}.")
        if not (xp.issubdtype(x.dtype, xp.floating) or xp.issubdtype(x.dtype, xp.integer)) or x.dtype == bool:
            raise ValueError(f"{fn}({name}): expected real coordinates (float or integer), got dtype {x.dtype}.")
    if tuple(p.shape) != tuple(q.shape):
        raise ValueError(
            f"{fn}: pred {tuple(p.shape)} and target {tuple(q.shape)} must have the same shape {tail_text}; "
            "pair the frames first (EAT resamples both clips to the shorter length with linspace)."
        )
    lead = tuple(p.shape[: p.ndim - len(tail)])
    if lead[-1] < min_frames:
        raise ValueError(
            f"{fn}(pred): expected at least {min_frames} frame(s) on the T axis of {tail_text}, got shape {tuple(p.shape)}."
        )
    mask = _mask(valid, lead, fn, xp)
    if xp is np:
        dt = np.promote_types(p.dtype, q.dtype)
        out = dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)
        return xp, p.astype(np.float64, copy=False), q.astype(np.float64, copy=False), mask, out
    # Metrics are never computed below float32 (house rule: metrics in f32).
    dt = xp.promote_types(xp.promote_types(p.dtype, q.dtype), xp.float32)
    return xp, p.astype(dt), q.astype(dt), mask, dt


def _mask(valid: Any, lead: tuple[int, ...], fn: str, xp: Any) -> Any:
    """valid -> bool array broadcast to `lead` = (..., T), or None for all frames."""
    if valid is None:
        return None
    v = xp.asarray(valid)
    if not (v.dtype == bool or xp.issubdtype(v.dtype, xp.integer)):
        raise ValueError(f"{fn}(valid): expected a bool (or 0/1 integer) mask of shape {lead}, got dtype {v.dtype}.")
    try:
        ok = np.broadcast_shapes(tuple(v.shape), lead) == lead
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{fn}(valid): expected shape {lead} (the (..., T) axes of pred), got {tuple(v.shape)}.")
    return xp.broadcast_to(v != 0, lead)


def _mean_over_frames(x: Any, valid: Any, xp: Any) -> Any:
    """Mean over the last axis restricted to valid entries; NaN where no entry is valid."""
    if valid is None:
        return xp.mean(x, axis=-1)
    # where (not multiply) so that NaN coordinates of undetected frames cannot leak in.
    total = xp.sum(xp.where(valid, x, 0.0), axis=-1)
    count = xp.sum(valid, axis=-1)
    return xp.where(count > 0, total / xp.maximum(count, 1), xp.nan)


def _centred(x: Any, points: slice, xp: Any) -> Any:
    """The point set translated to its own centroid (centroid over that set only), per frame."""
    s = x[..., points, :]
    return s - xp.mean(s, axis=-2, keepdims=True)


def _centred_distances(pred: Any, target: Any, points: slice, xp: Any) -> Any:
    """(..., T, K): || (p_k - pbar) - (q_k - qbar) || per frame and point."""
    return xp.linalg.norm(_centred(pred, points, xp) - _centred(target, points, xp), axis=-1)


_LMK_SHAPE = "(..., T, 68, 2)"
_LMK_TAIL = (NUM_POINTS, 2)


# ----------------------------------------------------------------------------- landmark distances


def per_point_error(pred: Any, target: Any) -> Any:
    """Raw Euclidean distance per frame and point, (..., T, 68, 2) -> (..., T, 68).

    No centring, alignment or averaging (for per-point plots and error maps); same units as the
    input (pixels of the crop). MACL's own validation LMD (`compare_landmarks` in the reference code) is
    `per_point_error(pred, gt)[..., MOUTH].mean((-2, -1))` on de-aligned, un-centred coordinates.
    """
    xp, p, q, _, out = _prepare(pred, target, None, "per_point_error", _LMK_TAIL, _LMK_SHAPE)
    return xp.linalg.norm(p - q, axis=-1).astype(out)


def _lmd(pred: Any, target: Any, valid: Any, points: slice, fn: str) -> Any:
    xp, p, q, mask, out = _prepare(pred, target, valid, fn, _LMK_TAIL, _LMK_SHAPE)
    per_frame = xp.mean(_centred_distances(p, q, points, xp), axis=-1)
    return _mean_over_frames(per_frame, mask, xp).astype(out)


def m_lmd(pred: Any, target: Any, valid: Any = None) -> Any:
    """Mouth landmark distance M-LMD (EAT convention), (..., T, 68, 2) -> (...).

    Points 48-67 (`MOUTH`, 20 points). Per frame each mouth set (generated p, ground truth q) is
    translated to its own centroid (mean of its 20 points); no scale or rotation normalisation.
    Value = sum over valid frames t and mouth points k of ||(p_tk - pbar_t) - (q_tk - qbar_t)||_2,
    divided by (valid frames x 20), i.e. the per-frame point mean averaged over valid frames.
    Pixels of the evaluation crop (256 px in EAT and here). NaN for a clip with no valid frame.
    """
    return _lmd(pred, target, valid, MOUTH, "m_lmd")


def f_lmd(pred: Any, target: Any, valid: Any = None) -> Any:
    """Full-face landmark distance F-LMD (EAT convention), (..., T, 68, 2) -> (...).

    As `m_lmd` with all 68 points: each frame's 68 points are translated to their own 68-point
    centroid, and the distances are averaged over 68 points and the valid frames. Pixels of the
    evaluation crop (256 px). NaN for a clip with no valid frame.
    """
    return _lmd(pred, target, valid, FACE, "f_lmd")


def lmd_atvgnet(pred: Any, target: Any, valid: Any = None) -> Any:
    """LMD as ATVGnet's `evaluation_matrix.py` computes it, (..., T, 68, 2) -> (...).

    Mouth points 48-67, each set translated to its own 20-point centroid, per frame the SUM of the
    20 Euclidean distances, then the mean over valid frames. At equal scale this is exactly
    20 x `m_lmd`. ATVGnet evaluates 128 x 128 frames, so its published values (~1.3-1.7 on LRW/GRID)
    are comparable only at that crop and resolution (after dividing by 20 if the authors did).
    NaN for a clip with no valid frame.
    """
    fn = "lmd_atvgnet"
    xp, p, q, mask, out = _prepare(pred, target, valid, fn, _LMK_TAIL, _LMK_SHAPE)
    per_frame = xp.sum(_centred_distances(p, q, MOUTH, xp), axis=-1)
    return _mean_over_frames(per_frame, mask, xp).astype(out)


def landmark_velocity_error(pred: Any, target: Any, points: str = "mouth", valid: Any = None, centre: bool = True) -> Any:
    """Landmark velocity distance LVD, (..., T, 68, 2) -> (...).

    points="mouth" (48-67) or "face" (all 68). With centre=True each frame's point set is first
    translated to its own centroid (as in `m_lmd` / `f_lmd`), so the displacements
    d_t = p_{t+1} - p_t and e_t = q_{t+1} - q_t exclude global head translation; centre=False uses
    raw displacements, which is what EAT's script differences. Value = mean over the valid pairs
    (t, t+1) (both frames valid) and over the points of ||d_tk - e_tk||_2, in pixels per frame.
    Differences from EAT's `test_lmd.py`, deliberately not reproduced: it pairs consecutive
    *detected* frames across gaps, divides by the frame count instead of the pair count, and its
    face-LVD accumulator adds the mouth term. Needs T >= 2; NaN for a clip with no valid pair.
    String options must be static under jit.
    """
    fn = "landmark_velocity_error"
    if points not in _POINT_SETS:
        raise ValueError(f"{fn}(points): expected 'mouth' or 'face', got {points!r}.")
    xp, p, q, mask, out = _prepare(pred, target, valid, fn, _LMK_TAIL, _LMK_SHAPE, min_frames=2)
    sel = _POINT_SETS[points]
    if centre:
        p, q = _centred(p, sel, xp), _centred(q, sel, xp)
    else:
        p, q = p[..., sel, :], q[..., sel, :]
    dp = p[..., 1:, :, :] - p[..., :-1, :, :]
    dq = q[..., 1:, :, :] - q[..., :-1, :, :]
    per_pair = xp.mean(xp.linalg.norm(dp - dq, axis=-1), axis=-1)
    pair_mask = None if mask is None else mask[..., 1:] & mask[..., :-1]
    return _mean_over_frames(per_pair, pair_mask, xp).astype(out)


# ----------------------------------------------------------------------------- head pose


_ROT_SHAPE = "(..., T, 3, 3)"


def rotation_distance(pred_rot: Any, target_rot: Any, valid: Any = None) -> Any:
    """Rotation distance RD, geodesic convention (recommended), (..., T, 3, 3) -> (...).

    Per frame the angle of the relative rotation R_pred^T R_gt, i.e.
    arccos((tr(R_pred^T R_gt) - 1) / 2) in degrees in [0, 180] (evaluated with atan2 for accuracy
    near 0, see `geometry.rigid.geodesic_angle`), averaged over valid frames. Independent of any
    Euler-angle order. Inputs must be rotation matrices. NaN for a clip with no valid frame.
    """
    fn = "rotation_distance"
    xp, p, q, mask, out = _prepare(pred_rot, target_rot, valid, fn, (3, 3), _ROT_SHAPE)
    return _mean_over_frames(geodesic_angle(p, q, degrees=True), mask, xp).astype(out)


def _wrapped_abs_degrees(diff_rad: Any, xp: Any) -> Any:
    """|diff| in degrees after wrapping diff to [-180, 180) (359 deg vs 1 deg -> 2 deg)."""
    wrapped = (diff_rad + np.pi) % (2 * np.pi) - np.pi
    return xp.abs(wrapped) * (180.0 / np.pi)


def angle_distance_2d(pred_angle: Any, target_angle: Any, valid: Any = None) -> Any:
    """In-plane (2-D) rotation distance, (..., T) angles in RADIANS -> (...) in degrees.

    Mean over valid frames of |pred - target| with the difference wrapped to [-180, 180) degrees,
    so 359 deg vs 1 deg counts 2 deg. Meant for MACL's 2-D pose path: theta = atan2(R10, R00) from
    `geometry.procrustes.align_2d` of the 9 T-shape points onto the anchor, applied identically to
    predicted and ground-truth landmarks (docs/decisions.md#d10-landmark-metrics). NaN for a clip with no valid frame.
    """
    fn = "angle_distance_2d"
    xp, p, q, mask, out = _prepare(pred_angle, target_angle, valid, fn, (), "(..., T)")
    return _mean_over_frames(_wrapped_abs_degrees(p - q, xp), mask, xp).astype(out)


def rotation_distance_euler(pred_rot: Any, target_rot: Any, valid: Any = None, order: str = "zyx") -> Any:
    """Rotation distance, Euler-L1 convention, (..., T, 3, 3) -> (...) in degrees.

    Both rotations are decomposed into Euler angles (`order` as in scipy's `as_euler`; default
    extrinsic 'zyx' as the peers' head-pose scripts, whose component 1 is yaw), each of the three
    differences is wrapped to [-180, 180) and its absolute value taken, then averaged over the
    three angles and the valid frames. Depends on the order and is ill-defined near gimbal lock
    (middle angle +-90 deg); prefer `rotation_distance` and name the convention when reporting.
    NaN for a clip with no valid frame. `order` must be static under jit.
    """
    fn = "rotation_distance_euler"
    xp, p, q, mask, out = _prepare(pred_rot, target_rot, valid, fn, (3, 3), _ROT_SHAPE)
    diff = rotation_to_euler(p, order, degrees=False) - rotation_to_euler(q, order, degrees=False)
    per_frame = xp.mean(_wrapped_abs_degrees(diff, xp), axis=-1)
    return _mean_over_frames(per_frame, mask, xp).astype(out)


__all__ = [
    "FACE",
    "IBUG68_REGIONS",
    "INNER_MOUTH",
    "JAW",
    "LEFT_EYE",
    "LEFT_EYEBROW",
    "MOUTH",
    "NOSE",
    "NUM_POINTS",
    "RIGHT_EYE",
    "RIGHT_EYEBROW",
    "angle_distance_2d",
    "f_lmd",
    "landmark_velocity_error",
    "lmd_atvgnet",
    "m_lmd",
    "per_point_error",
    "rotation_distance",
    "rotation_distance_euler",
]
