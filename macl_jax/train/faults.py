"""Fault injection, to rehearse preemption and crashes on a real job.

`MACL_FAULT_INJECT=sigkill@25` makes the process kill itself with SIGKILL right after step 25 is
dispatched (an async checkpoint may be in flight); `sigterm@25` sends SIGTERM, which takes the
preemption path (save, then exit 143). A `:P` suffix limits it to process P (`sigkill@25:1`).
Rerunning the same command must continue exactly where the last checkpoint left off.

The injector wraps the step function once, when a run starts, and only when the variable asks
for a fault on this process: otherwise the loop runs the jitted step itself.
"""

from __future__ import annotations

import os
import signal
from typing import Callable, TypeVar

import jax

ENV_VAR = "MACL_FAULT_INJECT"
_SIGNALS = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM}

StepFn = TypeVar("StepFn", bound=Callable)


def parse_spec(spec: str) -> tuple[signal.Signals, int, int | None]:
    """(signal, step, process or None for every process) of `sigkill@STEP[:PROCESS]`/`sigterm@...`."""
    try:
        kind, _, rest = spec.partition("@")
        step, _, process = rest.partition(":")
        return _SIGNALS[kind.lower()], int(step), int(process) if process else None
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{ENV_VAR}={spec!r}: expected sigkill@STEP or sigterm@STEP[:PROCESS]") from exc


def inject_faults(step_fn: StepFn, first_step: int, spec: str | None = None) -> StepFn:
    """`step_fn` itself, or, when `spec` (default: $MACL_FAULT_INJECT) asks this process for a
    fault, `step_fn` followed by the signal right after the call that completes the given step.
    `first_step` is the step the run starts (or resumes) from."""
    spec = os.environ.get(ENV_VAR, "") if spec is None else spec
    if not spec:
        return step_fn
    sig, at_step, process = parse_spec(spec)
    if process is not None and process != jax.process_index():
        return step_fn
    done = first_step

    def step_then_signal(*args, **kwargs):
        nonlocal done
        out = step_fn(*args, **kwargs)
        done += 1
        if done == at_step:
            os.kill(os.getpid(), sig)
        return out

    return step_then_signal  # type: ignore[return-value]
