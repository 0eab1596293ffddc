"""Assembling global batches from per-process data.

The batch dimension is split over (`data`, `fsdp`). Each process loads `global / process_count`
examples (the rows its devices own, in order) and the pieces become one global `jax.Array`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading dimension split over the batch axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def batch_shards(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def check_global_batch(global_batch_size: int, mesh: Mesh, process_count: int | None = None) -> int:
    """Returns the per-process batch size; raises a clear error if the sizes do not divide."""
    process_count = jax.process_count() if process_count is None else process_count
    shards = batch_shards(mesh)
    if global_batch_size % shards:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {shards} batch shards of the mesh "
            f"(data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}); choose a multiple of {shards}"
        )
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {process_count} processes"
        )
    return global_batch_size // process_count


def to_global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Turns a pytree of per-process numpy arrays into global arrays sharded over the batch axes."""

    def convert(x: Any) -> jax.Array:
        x = np.asarray(x)
        global_shape = (x.shape[0] * jax.process_count(), *x.shape[1:])
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x, global_shape)

    return jax.tree.map(convert, local_batch)
