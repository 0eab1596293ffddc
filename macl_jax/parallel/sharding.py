"""Shardings for train states: FSDP by size, everything else replicated.

For every array leaf of a state (parameters, optimizer state, model state):
1. with at least `min_fsdp_size` elements, it is split over `fsdp` along its largest dimension
   that `fsdp` divides, when the mesh has an `fsdp` axis larger than 1;
2. otherwise it is replicated (scalars, biases, norms, the step counter).

The rule depends on the shape only, so an optimizer moment (Adam's `mu`, `nu`) is laid out like
its parameter. No model shards over the `model` axis: along it, states are replicated.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def fsdp_spec(shape: Sequence[int], fsdp: int, min_size: int) -> P:
    """The largest dimension of `shape` that `fsdp` divides split over `fsdp`, or replicated."""
    if fsdp <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def infer_state_shardings(abstract_state: Any, mesh: Mesh, *, min_fsdp_size: int = 2**14) -> Any:
    """A tree of `NamedSharding` matching `abstract_state` (from `jax.eval_shape`)."""
    fsdp = mesh.shape.get("fsdp", 1)

    def sharding(leaf: Any) -> NamedSharding:
        return NamedSharding(mesh, fsdp_spec(tuple(getattr(leaf, "shape", ())), fsdp, min_fsdp_size))

    return jax.tree.map(sharding, abstract_state)
