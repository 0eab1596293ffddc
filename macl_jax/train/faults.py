"""Fault injection, to rehearse preemption and crashes on a real job.

`MACL_FAULT_INJECT=sigkill@25` makes the process kill itself with SIGKILL right after step 25 is
dispatched (an async checkpoint may be in flight); `sigterm@25` sends SIGTERM, which takes the
preemption path (save, then exit 143). A `:P` suffix limits it to process P (`sigkill@25:1`).
Rerunning the same command must continue exactly where the last checkpoint left off.
"""

from __future__ import annotations

import os
import signal

import jax

ENV_VAR = "MACL_FAULT_INJECT"
_SIGNALS = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM}


class FaultInjector:
    def __init__(self, spec: str | None = None):
        spec = os.environ.get(ENV_VAR, "") if spec is None else spec
        self.signal = None
        self.step = -1
        if not spec:
            return
        try:
            kind, _, rest = spec.partition("@")
            step, _, process = rest.partition(":")
            self.signal = _SIGNALS[kind.lower()]
            self.step = int(step)
            self.process = int(process) if process else None
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{ENV_VAR}={spec!r}: expected sigkill@STEP or sigterm@STEP[:PROCESS]") from exc

    def __call__(self, step: int) -> None:
        if self.signal is None or step != self.step:
            return
        if self.process is not None and self.process != jax.process_index():
            return
        os.kill(os.getpid(), self.signal)
