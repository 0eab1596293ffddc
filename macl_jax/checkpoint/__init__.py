"""Checkpointing: sharded train state, data-iterator position and metadata per step (Orbax,
``manager``); PyTorch checkpoints read without torch and mapped onto Flax state (``foreign``)."""

from macl_jax.checkpoint import foreign
from macl_jax.checkpoint.foreign import *  # noqa: F403  (the names in foreign.__all__)
from macl_jax.checkpoint.manager import CheckpointError, CheckpointManager

__all__ = ["CheckpointError", "CheckpointManager"]
__all__ += foreign.__all__
