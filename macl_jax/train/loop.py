"""The training loop every stage runs on.

`fit` creates the state sharded (abstract init, then a jitted init with `out_shardings`), resumes
from the newest readable checkpoint together with the data iterator, runs the jitted step with
the state donated, evaluates periodically, logs from process 0, saves asynchronously, saves on
preemption (SIGTERM), and stops on a non-finite loss without ever checkpointing a bad state.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from macl_jax.checkpoint import CheckpointManager
from macl_jax.config import fingerprint as config_fingerprint
from macl_jax.parallel import check_global_batch, infer_state_shardings, to_global_batch
from macl_jax.train.faults import inject_faults
from macl_jax.train.logging import MetricWriter, Progress
from macl_jax.train.runtime import runtime_mesh
from macl_jax.train.state import Task, TrainState
from macl_jax.train.timing import RunTimer


class NonFiniteError(RuntimeError):
    """Raised when a step produced NaN/Inf; the message names the last good checkpoint."""


class Evaluator(Protocol):
    """Evaluators are chosen by config; each maps a state to scalar metrics."""

    name: str

    def run(self, state: TrainState) -> dict[str, float]: ...


@dataclasses.dataclass
class FitResult:
    state: TrainState
    step: int
    preempted: bool
    last_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    goodput: dict[str, float] = dataclasses.field(default_factory=dict)  # RunTimer.goodput()
    # {"metric", "value", "step", "directory"} of the best state kept, when a best metric is set.
    best: dict[str, Any] = dataclasses.field(default_factory=dict)


class BestState:
    """Keeps the state with the best value of one evaluation metric in its own directory.

    The value travels in the checkpoint's metadata, so a resumed run compares against it. `mode` is
    "max" or "min" (checked when the config is loaded).
    """

    def __init__(self, directory: Path, metric: str, mode: str, fingerprint: str | None):
        self.metric, self.mode = metric, mode
        self.manager = CheckpointManager(
            directory, max_to_keep=1, async_save=False, fingerprint=fingerprint, handle_preemption=False
        )
        self.value: float | None = None
        self.step: int | None = self.manager.latest_step()
        if self.step is not None:
            self.value = float(self.manager.metadata(self.step)["user"]["value"])

    def offer(self, step: int, state: Any, results: dict[str, float]) -> bool:
        """Saves `state` if `results[metric]` beats the best so far; True if it did."""
        if self.metric not in results:
            return False
        value = float(results[self.metric])
        if not np.isfinite(value):
            return False
        better = self.value is None or (value > self.value if self.mode == "max" else value < self.value)
        if not better or step == self.step:
            return False
        self.manager.save(step, state, metadata={"metric": self.metric, "value": value}, force=True)
        self.value, self.step = value, step
        return True

    def summary(self) -> dict[str, Any]:
        if self.step is None:
            return {}
        return {"metric": self.metric, "value": self.value, "step": self.step, "directory": str(self.manager.directory)}


def fetch(x: Any) -> np.ndarray:
    """Host copy of a replicated (possibly multi-process) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def state_layout(task: Task, key: jax.Array, mesh: Mesh) -> tuple[Any, Any]:
    """(target, shardings): the state's shapes with their shardings on `mesh`, nothing allocated.

    `target` (ShapeDtypeStructs carrying shardings) is what a checkpoint restores into.
    """
    abstract = jax.eval_shape(task.init, key)
    shardings = infer_state_shardings(abstract, mesh)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    return target, shardings


def create_state(task: Task, key: jax.Array, mesh: Mesh) -> tuple[TrainState, Any, Any]:
    """(state, shardings, target) with the state created directly in its sharded layout."""
    target, shardings = state_layout(task, key, mesh)
    with jax.set_mesh(mesh):
        state = jax.jit(task.init, out_shardings=shardings)(key)
    return state, shardings, target


def make_step_fn(task: Task, shardings: Any):
    """The jitted step: RNG folded from the step inside jit, state donated."""

    def step(state: TrainState, batch: Any, base_key: jax.Array):
        return task.train_step(state, batch, jax.random.fold_in(base_key, state.step))

    return jax.jit(step, donate_argnums=0, out_shardings=(shardings, None))


def fit(
    task: Task,
    *,
    config: Any,
    workdir: str | Path,
    train_iter: Iterator[Any],
    mesh: Mesh,
    evaluators: Sequence[Evaluator] = (),
    fingerprint: str | None = None,
) -> FitResult:
    """Trains `task` for `config.train.num_steps` steps, resuming if `workdir` has checkpoints."""
    workdir = Path(workdir)
    timer = RunTimer()
    tcfg, ccfg = config.train, config.checkpoint
    num_steps = tcfg.num_steps
    check_global_batch(tcfg.global_batch_size, mesh)
    base_key = jax.random.key(config.seed)
    init_key, step_key = jax.random.split(base_key)

    ckpt = CheckpointManager(
        workdir / "checkpoints",
        max_to_keep=ccfg.max_to_keep,
        keep_period=ccfg.keep_period or None,
        save_interval_steps=ccfg.every_steps,
        async_save=ccfg.async_save,
        fingerprint=fingerprint,
    )
    best = BestState(workdir / "best", ccfg.best_metric, ccfg.best_mode, fingerprint) if ccfg.best_metric else None
    target, shardings = state_layout(task, init_key, mesh)
    start = 0
    state = None
    if ckpt.latest_step() is not None:
        t0 = timer.clock()
        restored = ckpt.restore(target, data_iterator=train_iter)
        if restored is not None:
            state, start = restored
            logging.info("resumed from step %d in %.2fs", start, timer.since(t0))
    if state is None:
        with jax.set_mesh(mesh):
            state = jax.jit(task.init, out_shardings=shardings)(init_key)
    jax.block_until_ready(state)
    timer.add("init", timer.since(timer.start))

    # A plain jitted step unless MACL_FAULT_INJECT rehearses a crash (see faults.py).
    step_fn = inject_faults(make_step_fn(task, shardings), first_step=start)
    writer = MetricWriter(workdir, resume_step=start)
    progress = Progress(num_steps, start, every=tcfg.log_every)
    profile_start = config.runtime.profile.start_step
    profile_stop = profile_start + config.runtime.profile.num_steps
    pending: list[tuple[int, dict]] = []
    last_good = ckpt.latest_step()
    last_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    timer.start_interval(start)
    preempted = False
    tracing = False

    def drain() -> None:
        """Brings pending step metrics to the host and stops on the first non-finite one."""
        nonlocal last_metrics
        for s, m in pending:
            host = {k: fetch(v) for k, v in m.items()}
            finite = bool(host.pop("finite", True)) and bool(np.isfinite(host.get("loss", 0.0)))
            if not finite:
                ckpt.wait_until_finished()
                writer.event("non_finite", step=s)
                writer.close()
                where = f"step {last_good} in {ckpt.directory}" if last_good is not None else "none (no checkpoint yet)"
                raise NonFiniteError(
                    f"non-finite loss, gradients or state at step {s}; training stopped and nothing after the last good "
                    f"checkpoint was saved. Last good checkpoint: {where}. Lower the learning rate, enable gradient "
                    "clipping or check the inputs of this step; rerunning the same command resumes from it."
                )
            last_metrics = {k: float(v) for k, v in host.items() if np.asarray(v).size == 1}
        pending.clear()

    def save(step: int, force: bool = False) -> None:
        nonlocal last_good
        drain()
        t0 = timer.clock()
        if ckpt.save(step, state, data_iterator=train_iter, metadata={"num_steps": num_steps}, force=force):
            last_good = step
        timer.add("checkpoint", timer.since(t0))

    try:
        with jax.set_mesh(mesh):
            for step in range(start, num_steps):
                if step == profile_start and not tracing:
                    jax.profiler.start_trace(str(workdir / "profile"))
                    tracing = True
                t0 = timer.clock()
                batch = to_global_batch(next(train_iter), mesh)
                waited = timer.since(t0)
                timer.add("data_wait", waited)
                state, metrics = step_fn(state, batch, step_key)
                done = step + 1
                if step == start:
                    jax.block_until_ready(metrics)  # once: separates compilation from steady state
                    timer.add("first_step", timer.since(t0) - waited)
                pending.append((done, metrics))
                if done == profile_stop and tracing:
                    jax.block_until_ready(state)
                    jax.profiler.stop_trace()
                    tracing = False
                if done % tcfg.log_every == 0 or done == num_steps:
                    drain()
                    writer.write(done, {**last_metrics, **timer.interval(done)})
                    progress.update(done, last_metrics)
                if evaluators and tcfg.eval_every > 0 and (done % tcfg.eval_every == 0 or done == num_steps):
                    t_eval = timer.clock()
                    for evaluator in evaluators:
                        results = {f"eval/{evaluator.name}/{k}": v for k, v in evaluator.run(state).items()}
                        eval_metrics.update(results)
                        writer.write(done, results)
                    if best is not None and best.offer(done, state, eval_metrics):
                        writer.event("best", step=done, metric=best.metric, value=best.value)
                    timer.add("eval", timer.since(t_eval))
                if ckpt.reached_preemption(done):
                    logging.warning("preemption signal received: saving step %d and stopping", done)
                    save(done, force=True)
                    writer.event("preempted", step=done)
                    preempted = True
                    break
                if done % ccfg.every_steps == 0 or done == num_steps:
                    save(done, force=done == num_steps)
        drain()
        t0 = timer.clock()
        ckpt.wait_until_finished()
        timer.add("checkpoint", timer.since(t0))
        writer.write(int(fetch(state.step)), timer.goodput())
    finally:
        if tracing:  # preempted, stopped or past the last step inside the window: keep the trace
            jax.profiler.stop_trace()
        ckpt.wait_until_finished()
        ckpt.close()
        if best is not None:
            best.manager.close()
        progress.close()
        writer.flush()
        writer.close()
    final_step = int(fetch(state.step))
    return FitResult(
        state, final_step, preempted, last_metrics, eval_metrics, timer.goodput(), best.summary() if best else {}
    )


def final_metrics(result: FitResult, evaluators: Sequence[Evaluator]) -> dict[str, dict[str, float]]:
    """Each evaluator's figures for the final state: those of the evaluation `fit` ran at the last
    step when there was one (no second pass over the test sets), else a fresh run."""
    final = {}
    for evaluator in evaluators:
        prefix = f"eval/{evaluator.name}/"
        # A preempted run's last evaluation is of an earlier state.
        logged = {} if result.preempted else {
            k[len(prefix):]: v for k, v in result.eval_metrics.items() if k.startswith(prefix)
        }
        final[evaluator.name] = logged or evaluator.run(result.state)
    return final


def fit_and_summarize(
    task: Task,
    *,
    config: Any,
    workdir: Path,
    train_iter: Iterator,
    mesh: Mesh,
    evaluators: Sequence[Evaluator],
) -> tuple[FitResult, dict[str, Any]]:
    """`fit` with the config's fingerprint, then the run summary every trainer returns: step,
    preemption, last training loss, `<evaluator>_<metric>` of the final state, goodput."""
    result = fit(
        task, config=config, workdir=workdir, train_iter=train_iter, mesh=mesh, evaluators=evaluators,
        fingerprint=config_fingerprint(config),
    )
    final = final_metrics(result, evaluators)
    summary = {
        "step": result.step,
        "preempted": result.preempted,
        "train_loss": result.last_metrics.get("loss"),
        **{f"{name}_{k}": v for name, metrics in final.items() for k, v in metrics.items()},
        **result.goodput,
    }
    return result, summary


def train_and_evaluate(
    config: Any,
    workdir: Path,
    *,
    build_task: Callable[[Any], Task],
    train_iterator: Callable[[Any, Mesh], Iterator],
    build_evaluators: Callable[[Any, Task, Mesh], Sequence[Evaluator]],
) -> tuple[FitResult, dict[str, Any]]:
    """A stage's `run` when it needs nothing else: the config's mesh, the task, its training
    stream and held-out evaluators, then `fit_and_summarize`."""
    mesh = runtime_mesh(config)
    task = build_task(config)
    train_iter = train_iterator(config, mesh)
    evaluators = build_evaluators(config, task, mesh)
    return fit_and_summarize(task, config=config, workdir=workdir, train_iter=train_iter, mesh=mesh, evaluators=evaluators)
