"""The motion matcher of Rhythmic Head Motion: which of K reference frames the generator warps.

The warping reference should show the background the target will uncover, so at inference it is
the reference whose head pose is nearest the target's. The cost is the mean absolute difference
of the rotation vectors, rotation only: translations come in dataset-specific units (pixels, face
units) and would need a scale to be comparable with radians; the authors' training matcher also
compares rotations only.

Training deliberately picks the reference that differs most (with probability `worst_prob`,
else a random one), so the generator learns to compose from a poorly matching reference too
(docs/rhm_training.md#motion-matcher).

`pose_distance` and `nearest_reference` accept numpy or jax arrays (jit-traceable with jax);
`match_reference` draws from a numpy Generator and is numpy only (grain workers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from macl_jax.geometry._backend import namespace
from macl_jax.geometry.rigid import rotation_to_rotvec


def pose_distance(reference_rotations: Any, target_rotation: Any) -> Any:
    """mean |rotvec(R_k) - rotvec(R_target)| over the 3 components: (..., K, 3, 3), (..., 3, 3) -> (..., K)."""
    xp = namespace(reference_rotations, target_rotation)
    refs, tgt = xp.asarray(reference_rotations), xp.asarray(target_rotation)
    if refs.ndim < 3 or refs.shape[-2:] != (3, 3) or tgt.shape[-2:] != (3, 3):
        raise ValueError(
            f"pose_distance: want reference rotations (..., K, 3, 3) and a target rotation (..., 3, 3), "
            f"got {tuple(refs.shape)} and {tuple(tgt.shape)}"
        )
    r = rotation_to_rotvec(refs)
    t = rotation_to_rotvec(tgt)
    return xp.mean(xp.abs(r - t[..., None, :]), axis=-1)


def nearest_reference(reference_rotations: Any, target_rotation: Any) -> Any:
    """Index (...,) of the reference whose head rotation is nearest the target's (first on ties)."""
    xp = namespace(reference_rotations, target_rotation)
    return xp.argmin(pose_distance(reference_rotations, target_rotation), axis=-1)


def match_reference(
    reference_rotations: np.ndarray,
    target_rotation: np.ndarray,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    worst_prob: float = 0.75,
) -> int:
    """The warping reference of one example: an index into the K references.

    Evaluation (`train=False`): `nearest_reference`. Training: with probability `worst_prob` the
    reference with the largest `pose_distance` (first on ties), otherwise one drawn uniformly from
    all K (which may again be the farthest).
    """
    if not 0.0 <= worst_prob <= 1.0:
        raise ValueError(f"match_reference: worst_prob must be in [0, 1], got {worst_prob}")
    cost = np.asarray(pose_distance(np.asarray(reference_rotations), np.asarray(target_rotation)))
    if cost.ndim != 1:
        raise ValueError(f"match_reference: one example at a time: want (K, 3, 3) and (3, 3), got costs {cost.shape}")
    if not train:
        return int(np.argmin(cost))
    if rng is None:
        raise ValueError("match_reference: training draws need a numpy Generator (rng)")
    if rng.random() < worst_prob:
        return int(np.argmax(cost))
    return int(rng.integers(0, cost.shape[0]))
