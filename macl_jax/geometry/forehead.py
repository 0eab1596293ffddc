"""The 15 forehead points that close a 68-point face over the top of the head.

iBUG landmarks stop at the brows, so neither an outline drawn through them nor a mesh built on them
covers the forehead. Both the landmark edge map (`macl_jax.media.face_edges`) and the face mesh
(`macl_jax.geometry.face_mesh`) add the same points, as Rhythmic Head Motion's reference code does
when it draws landmarks: jaw points 15, 14, ..., 1 mirrored about the horizontal line through the
jaw's ends, y_b = (y_0 + y_16) / 2, with their height scaled by 2/3, y' = y_b + (y_b - y) * 2/3.
x (and z, for 3-D points) is kept, so the forehead curves back toward the temples as the jaw does
toward the ears. Point 68 + i comes from jaw point 15 - i, so the outline 0..16, 68..82 runs once
around the face. jax-free: numpy in, numpy out; jax arrays in, jax.numpy (jit-traceable).
"""

from __future__ import annotations

from typing import Any

from macl_jax.geometry._backend import namespace

FOREHEAD_JAW_INDICES: tuple[int, ...] = tuple(range(15, 0, -1))
NUM_FACE_POINTS = 68 + len(FOREHEAD_JAW_INDICES)  # 83


def add_forehead(points: Any) -> Any:
    """(..., 68, C) landmarks (C = 2 or 3; pixel or face-local, y down) -> (..., 83, C), in the input dtype."""
    xp = namespace(points)
    p = xp.asarray(points)
    if p.ndim < 2 or p.shape[-2] != 68 or p.shape[-1] not in (2, 3):
        raise ValueError(f"add_forehead(points): expected (..., 68, 2 or 3) landmarks, got shape {p.shape}.")
    jaw = p[..., list(FOREHEAD_JAW_INDICES), :]
    base = 0.5 * (p[..., 0, 1] + p[..., 16, 1])[..., None]
    mirrored_y = base + (base - jaw[..., 1]) * (2.0 / 3.0)
    forehead = xp.concatenate([jaw[..., :1], mirrored_y[..., None], jaw[..., 2:]], axis=-1)
    return xp.concatenate([p, forehead.astype(p.dtype)], axis=-2)
