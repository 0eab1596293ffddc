"""A trained state back from a run's checkpoints, for evaluation and inference.

`restore_state` lays the state out for a given mesh (the `eval` stage shards it like training);
`restore_on_one_device` puts it on the first local device (generation needs no mesh).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from macl_jax.checkpoint import CheckpointManager
from macl_jax.config import fingerprint
from macl_jax.parallel import make_mesh
from macl_jax.train.loop import state_layout


class EvalError(RuntimeError):
    """No checkpoint to evaluate or generate from, or a stage without evaluators."""


def restore_state(task: Any, config: Any, workdir: Path, mesh: Any) -> tuple[Any, int]:
    """The train state of the requested checkpoint, laid out for `mesh`."""
    directory = Path(config.eval.checkpoint_dir or workdir / "checkpoints")
    if not directory.is_dir() or not any(p.name.isdigit() for p in directory.iterdir()):
        raise EvalError(
            f"no checkpoint in {directory}; train first (macl-jax {config.stage} --workdir {workdir}) "
            "or point --config.eval.checkpoint_dir at a run's checkpoints"
        )
    target, _ = state_layout(task, jax.random.key(0), mesh)
    manager = CheckpointManager(directory, async_save=False, fingerprint=fingerprint(config))
    try:
        step = config.eval.checkpoint_step
        restored = manager.restore(target, step=None if step < 0 else step)
    finally:
        manager.close()
    if restored is None:
        raise EvalError(f"no readable checkpoint in {directory}")
    return restored


def restore_on_one_device(task: Any, config: Any, workdir: str | Path) -> tuple[Any, int]:
    """`restore_state` onto the first local device: inference needs no mesh from the config."""
    return restore_state(task, config, Path(workdir), make_mesh({"data": 1}, devices=jax.devices()[:1]))
