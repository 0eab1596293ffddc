"""The `eval` stage: restore a checkpoint of any training stage and run its evaluators sharded.

    macl-jax eval --config configs/<x>.py:<preset> --workdir <dir> [--config.eval.checkpoint_step=N]

Every process evaluates its rows of each global batch; metrics are reduced over the whole test
set (see `macl_jax.evals.sharded`), so 1 process, N processes and any device count agree.
Results go to `<workdir>/eval_results.json` (process 0).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import jax

from macl_jax.checkpoint import CheckpointManager
from macl_jax.config import fingerprint, write_json_atomic
from macl_jax.parallel import make_mesh
from macl_jax.stages import STAGES
from macl_jax.train.loop import state_layout
from macl_jax.train.runtime import runtime_mesh


class EvalError(RuntimeError):
    """No checkpoint to evaluate, or a stage without evaluators."""


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


def run(config: Any, workdir: Path) -> dict[str, Any]:
    trainer = importlib.import_module(STAGES[config.stage].implementation.partition(":")[0])
    if not hasattr(trainer, "build_evaluators"):
        raise EvalError(f"stage {config.stage!r} defines no evaluators")
    mesh = runtime_mesh(config)
    task = trainer.build_task(config)
    state, step = restore_state(task, config, workdir, mesh)
    results = {ev.name: ev.run(state) for ev in trainer.build_evaluators(config, task, mesh)}
    summary = {"stage": config.stage, "step": step, "processes": jax.process_count(), "devices": jax.device_count(), "results": results}
    if jax.process_index() == 0:
        write_json_atomic(Path(workdir) / "eval_results.json", summary)
    return summary
