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

from macl_jax.config import write_json_atomic
from macl_jax.stages import STAGES
from macl_jax.train.restore import EvalError, restore_state
from macl_jax.train.runtime import runtime_mesh


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
