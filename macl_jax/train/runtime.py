"""Process-level set-up shared by every stage: distributed init, caches, the mesh."""

from __future__ import annotations

from typing import Any

import logging as std_logging

import jax
from absl import logging
from jax.sharding import Mesh

from macl_jax.parallel import initialize, make_mesh


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
        int(dist.num_processes),
        int(dist.process_id),
        num_cpu_devices=int(rt.num_cpu_devices),
        initialization_timeout_s=int(dist.timeout_s),
    )
    if rt.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(rt.compilation_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def runtime_mesh(config: Any) -> Mesh:
    rt = config.runtime
    return make_mesh(dict(rt.mesh), dcn_axes=dict(rt.dcn_mesh))


def training_iterator(source: Any, config: Any, mesh: Mesh, transform: Any = None) -> Any:
    """This process's checkpointable iterator over the global training stream of `source`.

    Rows follow the batch sharding of `mesh`; `transform(example, rng)` (numpy only) windows each
    example; `config.data` sets worker processes and prefetch.
    """
    from data_pipelines.loader import global_batch_dataset, make_iterator  # data code stays out of jit-only imports
    from macl_jax.parallel import process_batch_shard

    shard_index, shard_count = process_batch_shard(mesh)
    dataset = global_batch_dataset(
        source,
        global_batch_size=int(config.train.global_batch_size),
        process_index=shard_index,
        process_count=shard_count,
        seed=int(config.seed),
        transform=transform,
    )
    return make_iterator(dataset, worker_count=int(config.data.worker_count), prefetch=int(config.data.prefetch))
