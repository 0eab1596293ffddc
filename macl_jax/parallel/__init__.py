"""Distributed start-up, device meshes, global batches and parameter sharding."""

from macl_jax.parallel.batch import batch_sharding, check_global_batch, process_batch_shard, to_global_batch
from macl_jax.parallel.distributed import initialize, is_initialized
from macl_jax.parallel.mesh import MESH_AXES, make_mesh, resolve_mesh_shape
from macl_jax.parallel.sharding import infer_state_shardings

__all__ = [
    "MESH_AXES",
    "batch_sharding",
    "check_global_batch",
    "infer_state_shardings",
    "initialize",
    "is_initialized",
    "make_mesh",
    "process_batch_shard",
    "resolve_mesh_shape",
    "to_global_batch",
]
