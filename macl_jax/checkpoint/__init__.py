"""Checkpointing: sharded train state, data-iterator position and metadata per step (Orbax)."""

from macl_jax.checkpoint.manager import CheckpointError, CheckpointManager

__all__ = ["CheckpointError", "CheckpointManager"]
