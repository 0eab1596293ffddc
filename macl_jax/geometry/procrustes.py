"""2-D pose path of MACL: clip scale normalisation and per-frame rigid alignment to the anchor.

Preprocessing (numpy, in data workers): `normalise_scale` per clip, then `align_2d` per frame,
storing `angle`, `translation`, `scale` and `offset`. Output path (on device or in numpy):
`dealign_2d` with the predicted angle/translation, then `denormalise_scale` back to pixels.
`align_2d`, `dealign_2d`, `rotation_2d`, `normalise_scale` and `denormalise_scale` also take jax
arrays and are jit-traceable.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from macl_jax.geometry._backend import check_points, namespace, swap_last, to_compute
from macl_jax.geometry.rigid import _kabsch

# Nose bridge and tip (27, 28, 29, 30), nostril centre (33), the four eye corners (36, 39, 42, 45).
T_SHAPE_INDICES: tuple[int, ...] = (27, 28, 29, 30, 33, 36, 39, 42, 45)

# MakeItTalk's ANCHOR_T_SHAPE_9 (x, y), divided by the 82 px x-distance of points 36 and 45 and
# centred on the mean of points 33, 36 and 45 (rows of T_SHAPE_INDICES, in that order).
ANCHOR_T_SHAPE_9: np.ndarray = np.array(
    [
        [-0.0163, -0.1626],
        [-0.0163, -0.0285],
        [-0.0163, 0.1057],
        [-0.0163, 0.2154],
        [0.0081, 0.3496],
        [-0.5041, -0.1626],
        [-0.2358, -0.1626],
        [0.2276, -0.1626],
        [0.4959, -0.1870],
    ],
    dtype=np.float64,
)
ANCHOR_T_SHAPE_9.setflags(write=False)

# Points whose clip-mean centroid defines the normalised origin (same as the anchor's centring).
CENTRE_INDICES: tuple[int, ...] = (33, 36, 45)
EYE_CORNER_INDICES: tuple[int, int] = (36, 45)


class Alignment2D(NamedTuple):
    """Result of `align_2d`; aligned = x @ rotation.T + translation per frame."""

    aligned: Any  # (..., 68, 2)
    angle: Any  # (...,) radians, atan2(R10, R00)
    translation: Any  # (..., 2)
    rotation: Any  # (..., 2, 2)


def rotation_2d(angle: Any) -> Any:
    """R(theta) = [[cos, -sin], [sin, cos]] for angles (...,) -> (..., 2, 2)."""
    xp = namespace(angle)
    th, out = to_compute(angle, xp)
    c, s = xp.cos(th), xp.sin(th)
    return xp.stack([xp.stack([c, -s], -1), xp.stack([s, c], -1)], -2).astype(out)


def align_2d(
    landmarks: Any,
    anchor: Any = ANCHOR_T_SHAPE_9,
    indices: Sequence[int] = T_SHAPE_INDICES,
) -> Alignment2D:
    """Rigidly (no scale) registers each frame's T-shape points onto the anchor.

    landmarks (..., 68, 2) are expected in normalised units (see `normalise_scale`): rigid
    alignment cannot bridge a pixel/unit scale gap. Kabsch as in MACL's icp: centre both sets,
    H = A^T B, R = V U^T with the last row of V^T negated when det < 0, t = c_anchor - R c_frame.
    Returns aligned = R x + t for all points, angle = atan2(R10, R00), t and R.
    """
    xp = namespace(landmarks, anchor)
    x, out = to_compute(landmarks, xp)
    check_points(x, "align_2d(landmarks)")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 1 or idx.size < 2 or idx.min() < 0 or idx.max() >= x.shape[-2]:
        raise ValueError(
            f"align_2d(indices): need at least 2 point indices in [0, {x.shape[-2]}), got {tuple(idx.tolist())}."
        )
    anc = xp.asarray(anchor, dtype=x.dtype)
    if tuple(anc.shape[-2:]) != (idx.size, 2):
        raise ValueError(
            f"align_2d(anchor): expected shape ({idx.size}, 2) to match indices, got {tuple(anc.shape)}; "
            "pass x, y columns only."
        )
    r, t = _kabsch(x[..., idx, :], anc, xp)
    aligned = x @ swap_last(r, xp) + t[..., None, :]
    angle = xp.arctan2(r[..., 1, 0], r[..., 0, 0])
    return Alignment2D(aligned.astype(out), angle.astype(out), t.astype(out), r.astype(out))


def dealign_2d(aligned: Any, angle: Any, translation: Any) -> Any:
    """Back to the pre-alignment frame: x = R(theta)^T (x' - t).

    aligned (..., N, 2), angle (...,), translation (..., 2). Uses only cos/sin, so it is cheap
    and differentiable on device (the MDN de-aligns its predicted theta, t this way).
    """
    xp = namespace(aligned, angle, translation)
    x, out = to_compute(aligned, xp)
    check_points(x, "dealign_2d(aligned)")
    th = xp.asarray(angle, dtype=x.dtype)[..., None]
    t = xp.asarray(translation, dtype=x.dtype)
    if t.shape[-1:] != (2,):
        raise ValueError(f"dealign_2d(translation): expected shape (..., 2), got {tuple(t.shape)}.")
    d = x - t[..., None, :]
    c, s = xp.cos(th), xp.sin(th)
    # Row-vector form of R^T d: (c dx + s dy, -s dx + c dy).
    res = xp.stack([c * d[..., 0] + s * d[..., 1], c * d[..., 1] - s * d[..., 0]], axis=-1)
    return res.astype(out)


def normalise_scale(landmarks: Any) -> tuple[Any, Any, Any]:
    """Clip-level normalisation (docs/decisions.md#d7-landmark-preprocessing, scale and offset step):
    returns (normalised, scale, offset).

    landmarks: a clip (..., T, 68, C) in pixels (C = 2 or 3; time on axis -3).
    scale  (...,)   = mean over the T frames of |p36 - p45| (Euclidean, all C coordinates).
    offset (..., C) = mean over the T frames of mean(p33, p36, p45) of `landmarks / scale`.
    normalised = landmarks / scale - offset, so the clip's eye-corner distance averages 1 and
    its (33, 36, 45) centroid averages 0, like the anchor. Both are clip constants (one number
    per clip, not per frame), so head motion inside the clip is preserved for `align_2d`.
    Inverse: `denormalise_scale(normalised, scale, offset)` = (normalised + offset) * scale.
    """
    xp = namespace(landmarks)
    x, out = to_compute(landmarks, xp)
    check_points(x, "normalise_scale(landmarks)", num_points=68, dims=(2, 3))
    if x.ndim < 3:
        raise ValueError(
            f"normalise_scale(landmarks): expected a clip (..., T, 68, C), got shape {tuple(x.shape)}; "
            "wrap a single frame as landmarks[None]."
        )
    i, j = EYE_CORNER_INDICES
    scale = xp.mean(xp.linalg.norm(x[..., i, :] - x[..., j, :], axis=-1), axis=-1)
    if xp is np and not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(
            "normalise_scale(landmarks): the outer eye corners 36 and 45 coincide (or are not finite) "
            "in a whole clip, so it has no scale; drop that clip or fix its landmarks."
        )
    y = x / scale[..., None, None, None]
    offset = xp.mean(xp.mean(y[..., np.asarray(CENTRE_INDICES), :], axis=-2), axis=-2)
    normalised = y - offset[..., None, None, :]
    return normalised.astype(out), scale.astype(out), offset.astype(out)


def denormalise_scale(x: Any, scale: Any, offset: Any) -> Any:
    """Inverse of `normalise_scale`: (x + offset) * scale.

    x (..., N, C) may be a clip (..., T, N, C) or single frames; scale (L...) and offset
    (L..., C) carry the clip's leading axes L and broadcast over the rest.
    """
    xp = namespace(x, scale, offset)
    v, out = to_compute(x, xp)
    s = xp.asarray(scale, dtype=v.dtype)
    o = xp.asarray(offset, dtype=v.dtype)
    if o.ndim < 1 or o.shape[-1] != v.shape[-1] or o.ndim - 1 != s.ndim or s.ndim > v.ndim - 2:
        raise ValueError(
            f"denormalise_scale: offset {tuple(o.shape)} must be scale {tuple(s.shape)} + ({v.shape[-1]},), "
            f"with scale's axes leading those of x {tuple(v.shape)}."
        )
    extra = v.ndim - s.ndim
    s = xp.reshape(s, tuple(s.shape) + (1,) * extra)
    o = xp.reshape(o, tuple(o.shape[:-1]) + (1,) * (extra - 1) + tuple(o.shape[-1:]))
    return ((v + o) * s).astype(out)
