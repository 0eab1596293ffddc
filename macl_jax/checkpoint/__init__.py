"""Checkpointing: sharded train state, data-iterator position and metadata per step (Orbax);
PyTorch checkpoints read without torch and mapped onto Flax state (``foreign``)."""

from macl_jax.checkpoint.foreign import (
    ForeignCheckpointError,
    assign,
    conv_kernel,
    conv_transpose_kernel,
    linear_kernel,
    read_torch_tensors,
    unused,
)
from macl_jax.checkpoint.manager import CheckpointError, CheckpointManager

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "ForeignCheckpointError",
    "assign",
    "conv_kernel",
    "conv_transpose_kernel",
    "linear_kernel",
    "read_torch_tensors",
    "unused",
]
