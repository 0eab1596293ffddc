"""Process-level set-up shared by every stage: distributed init, caches, the mesh."""

from __future__ import annotations

import logging as std_logging
from typing import Any

import jax
from absl import logging
from jax.sharding import Mesh

from data_pipelines.loader import global_batch_dataset, make_iterator
from macl_jax.parallel import initialize, make_mesh, process_batch_shard


class _QuietLibraries(std_logging.Filter):
    """Drops INFO chatter of Orbax and Grain (several lines per save); warnings pass."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        noisy = "/orbax/" in record.pathname or "/grain/" in record.pathname
        return record.levelno >= std_logging.WARNING or not noisy


def quiet_library_logs() -> None:
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())


def setup_runtime(config: Any) -> None:
    """Joins the multi-process job (if any) and configures JAX; call before using devices."""
    quiet_library_logs()
    rt = config.runtime
    dist = rt.distributed
    initialize(
        dist.coordinator_address,
        dist.num_processes,
        dist.process_id,
        num_cpu_devices=rt.num_cpu_devices,
        initialization_timeout_s=dist.timeout_s,
    )
    if rt.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", rt.compilation_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def runtime_mesh(config: Any) -> Mesh:
    rt = config.runtime
    return make_mesh(dict(rt.mesh), dcn_axes=dict(rt.dcn_mesh))


def training_iterator(source: Any, config: Any, mesh: Mesh, transform: Any = None) -> Any:
    """This process's checkpointable iterator over the global training stream of `source`.

    Rows follow the batch sharding of `mesh`; `transform(example, rng)` (numpy only) windows each
    example; `config.data` sets worker processes and prefetch.
    """
    shard_index, shard_count = process_batch_shard(mesh)
    dataset = global_batch_dataset(
        source,
        global_batch_size=config.train.global_batch_size,
        process_index=shard_index,
        process_count=shard_count,
        seed=config.seed,
        transform=transform,
    )
    return make_iterator(dataset, worker_count=config.data.worker_count, prefetch=config.data.prefetch)
