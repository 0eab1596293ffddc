"""Assembling global batches from per-process data.

The batch dimension is split over (`data`, `fsdp`). Each process loads the rows its devices own,
in order (`process_batch_shard`), and the pieces become one global `jax.Array`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


@functools.lru_cache(maxsize=64)
def batch_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Leading dimension split over the batch axes, the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def batch_shards(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


@functools.lru_cache(maxsize=16)  # called for every batch; the answer depends on the mesh only
def process_batch_shard(mesh: Mesh) -> tuple[int, int]:
    """(index, count): this process loads rows block `index` of `count` equal blocks of each batch.

    Usually (process_index, process_count). When a non-batch axis (`model`) spans processes,
    several processes hold the same rows, so there are fewer blocks than processes and those
    processes load identical data.
    """
    shards = batch_shards(mesh)
    index_map = batch_sharding(mesh).addressable_devices_indices_map((shards,))
    blocks = sorted({(idx[0].start or 0) for idx in index_map.values()})
    if blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise ValueError(
            f"process {jax.process_index()} holds non-contiguous batch rows {blocks} of the mesh "
            f"{dict(mesh.shape)}; build the mesh so that each process owns a contiguous block of (data, fsdp)"
        )
    return blocks[0] // len(blocks), shards // len(blocks)


def check_global_batch(global_batch_size: int, mesh: Mesh, process_count: int | None = None) -> int:
    """Returns the per-process batch size; raises a clear error if the sizes do not divide.

    `process_count` defaults to the number of row blocks the processes load (`process_batch_shard`).
    """
    process_count = process_batch_shard(mesh)[1] if process_count is None else process_count
    shards = batch_shards(mesh)
    if global_batch_size % shards:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {shards} batch shards of the mesh "
            f"(data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}); set --config.train.global_batch_size "
            f"(or eval.global_batch_size) to a multiple of {shards}"
        )
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the {process_count} processes that load "
            "distinct rows; choose a multiple of both"
        )
    return global_batch_size // process_count


def to_global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Turns a pytree of per-process numpy arrays into global arrays sharded over the batch axes."""

    blocks = process_batch_shard(mesh)[1]

    def convert(x: Any) -> jax.Array:
        x = np.asarray(x)
        global_shape = (x.shape[0] * blocks, *x.shape[1:])
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x, global_shape)

    return jax.tree.map(convert, local_batch)
