"""Mouth measures on 68-point landmarks and the "closed-mouth" reference frame of a clip.

numpy or jax input (jit-traceable); only x, y are used, so (..., 68, 3) works too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from macl_jax.geometry._backend import check_points, namespace, to_compute

INNER_LIP_INDICES: tuple[int, ...] = tuple(range(60, 68))
# Upper/lower inner-lip pairs facing each other (RH/E20 mouth-openness helper).
INNER_LIP_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))


def inner_lip_area(landmarks: Any, convention: str = "fan") -> Any:
    """Area of the inner-lip polygon 60..67 per frame: (..., 68, C) -> (...,).

    convention="fan" (MACL / MakeItTalk `area_of_polygon`): fan triangulation from point 60,
    summing the *absolute* area of each triangle (60, i, i+1). For a simple convex lip contour
    this is the polygon area; when the upper lip folds below the lower one (a crossed, closed
    mouth) the folded parts add instead of cancelling.
    convention="shoelace": |signed polygon area|, where folded parts cancel.
    """
    if convention not in ("fan", "shoelace"):
        raise ValueError(f"inner_lip_area(convention): expected 'fan' or 'shoelace', got {convention!r}.")
    xp = namespace(landmarks)
    x, out = to_compute(landmarks, xp)
    check_points(x, "inner_lip_area(landmarks)", num_points=68, dims=(2, 3))
    d = x[..., 61:68, :2] - x[..., 60:61, :2]
    cross = d[..., :-1, 0] * d[..., 1:, 1] - d[..., :-1, 1] * d[..., 1:, 0]
    area = 0.5 * (xp.sum(xp.abs(cross), axis=-1) if convention == "fan" else xp.abs(xp.sum(cross, axis=-1)))
    return area.astype(out)


def mouth_openness(landmarks: Any) -> Any:
    """Mean of |dx| and |dy| over the inner-lip pairs (61,67), (62,66), (63,65): (..., 68, C) -> (...,)."""
    xp = namespace(landmarks)
    x, out = to_compute(landmarks, xp)
    check_points(x, "mouth_openness(landmarks)", num_points=68, dims=(2, 3))
    upper = np.asarray([p for p, _ in INNER_LIP_PAIRS])
    lower = np.asarray([q for _, q in INNER_LIP_PAIRS])
    diff = xp.abs(x[..., upper, :2] - x[..., lower, :2])
    return xp.mean(diff, axis=(-2, -1)).astype(out)


def closed_mouth_frame(clip: Any, method: str = "area", stride: int = 1) -> Any:
    """Index of the most closed-mouth frame of a clip (..., T, 68, C).

    method="area": smallest `inner_lip_area` (fan convention; MACL's reference landmark).
    method="openness": smallest `mouth_openness` (RH/E20). Only frames 0, stride, 2*stride, ...
    are considered (MakeItTalk samples every 10th frame); the index returned is into the full
    clip. Ties go to the earliest frame. Returns a Python int for a single numpy clip, else an
    integer array over the leading axes.
    """
    if method not in ("area", "openness"):
        raise ValueError(f"closed_mouth_frame(method): expected 'area' or 'openness', got {method!r}.")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"closed_mouth_frame(stride): expected a positive int, got {stride!r}.")
    xp = namespace(clip)
    x, _ = to_compute(clip, xp)
    check_points(x, "closed_mouth_frame(clip)", num_points=68, dims=(2, 3))
    if x.ndim < 3 or x.shape[-3] == 0:
        raise ValueError(f"closed_mouth_frame(clip): expected a clip (..., T, 68, C) with T >= 1, got {tuple(x.shape)}.")
    sub = x[..., ::stride, :, :]
    score = inner_lip_area(sub) if method == "area" else mouth_openness(sub)
    index = xp.argmin(score, axis=-1) * stride
    if xp is np and index.ndim == 0:
        return int(index)
    return index
