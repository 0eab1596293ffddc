"""Where the wall time of a training run goes.

One `RunTimer` per run adds up the seconds spent outside the training steps, by phase. The same
totals give the two views the loop logs: `interval` (the `perf/` figures of each logged step: step
time, data wait and checkpoint time since the previous log line) and `goodput` (the `goodput/`
summary at the end: the share of the whole run spent in training steps).
"""

from __future__ import annotations

import time
from typing import Callable

# init: state creation or restore, with its compilation; first_step: the first step's compilation,
# mostly; data_wait: waiting for the next batch; checkpoint: saving (and the final wait for async
# saves); eval: periodic evaluation and the best-state save.
PHASES = ("init", "first_step", "data_wait", "checkpoint", "eval")


class RunTimer:
    """Seconds per phase since the start, and the rate of the steps since the last `interval`."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.start = clock()
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._mark = (self.start, 0, dict(self.seconds))

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    def since(self, t0: float) -> float:
        """Seconds from `t0` (a reading of `clock`) to now."""
        return self.clock() - t0

    def start_interval(self, step: int) -> None:
        """The next `interval` covers the steps after `step`, timed from now."""
        self._mark = (self.clock(), step, dict(self.seconds))

    def interval(self, step: int) -> dict[str, float]:
        """`perf/` figures of the steps since the last call (or `start_interval`), up to `step`; the
        next interval starts now. Step time is wall time per step, everything included."""
        now = self.clock()
        t0, first, before = self._mark
        elapsed, steps = now - t0, max(1, step - first)
        waited = self.seconds["data_wait"] - before["data_wait"]
        saving = self.seconds["checkpoint"] - before["checkpoint"]
        self._mark = (now, step, dict(self.seconds))
        return {
            "perf/step_time_s": elapsed / steps,
            "perf/data_wait_s": waited / steps,
            "perf/checkpoint_s": saving,
            "perf/steps_per_s": steps / elapsed if elapsed > 0 else 0.0,
        }

    def goodput(self) -> dict[str, float]:
        """`goodput/` summary: total seconds, each phase's seconds, and the fraction left for steps."""
        total = self.since(self.start)
        lost = sum(self.seconds.values())
        return {
            "goodput/fraction": max(0.0, total - lost) / total if total > 0 else 0.0,
            "goodput/total_s": total,
            **{f"goodput/{phase}_s": seconds for phase, seconds in self.seconds.items()},
        }
