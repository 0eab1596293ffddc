"""Metrics out of the training loop: JSON lines, TensorBoard events and a progress display.

Only process 0 writes. `metrics.jsonl` holds one object per line with `step` and the scalars;
after a resumption the steps re-run since the last checkpoint are logged again (later lines win)
and a `{"event": "resumed"}` line marks the point.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging as absl_logging


def _scalar(value: Any) -> float | int | bool | None:
    arr = np.asarray(value)
    if arr.size != 1:
        return None
    item = arr.reshape(()).item()
    if isinstance(item, float) and not math.isfinite(item):
        return str(item)  # JSON has no NaN/Inf literals
    return item


def read_metrics(path: str | Path) -> dict[int, dict]:
    """Per-step metrics from a `metrics.jsonl`, the latest line winning for repeated steps."""
    out: dict[int, dict] = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill; the step is logged again after resumption
            if "step" in record and "event" not in record:
                out.setdefault(int(record["step"]), {}).update(record)
    return out


class MetricWriter:
    """JSON lines + TensorBoard (tensorboardX), written by process 0 only."""

    def __init__(self, workdir: str | Path, *, enabled: bool | None = None, resume_step: int = 0):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if not self.enabled:
            return
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
        try:
            from tensorboardX import SummaryWriter  # deferred: only process 0 writes events; protobuf is slow to import

            # purge_step drops events logged after the checkpoint we resumed from.
            self._tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=resume_step or None)
        except ImportError:  # tensorboardX is a dependency; keep JSON logging if it is broken
            absl_logging.warning("tensorboardX unavailable; writing metrics.jsonl only")
        if resume_step:
            self.event("resumed", step=resume_step)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled or self._jsonl is None:
            return
        record: dict[str, Any] = {"step": int(step)}
        for key, value in metrics.items():
            scalar = _scalar(value)
            if scalar is not None:
                record[key] = scalar
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)

    def event(self, name: str, **fields: Any) -> None:
        if self.enabled and self._jsonl is not None:
            self._jsonl.write(json.dumps({"event": name, "time": time.time(), **fields}) + "\n")

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


class Progress:
    """A tqdm bar on interactive terminals, periodic plain lines otherwise (logs, CI)."""

    def __init__(self, total: int, initial: int = 0, *, every: int = 50, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.every = every
        self.total = total
        self._bar = None
        self._t0 = time.perf_counter()
        self._s0 = initial
        self._last_print = -float("inf")
        self._start = time.perf_counter()
        self._first_update = True
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm  # deferred: only interactive terminals draw a bar

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        loss = metrics.get("loss")
        if self._bar is not None:
            self._bar.n = step
            if loss is not None:
                self._bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)
            self._bar.refresh()
            return
        now = time.perf_counter()
        loss_text = f" loss {float(loss):.4g}" if loss is not None else ""
        if self._first_update:
            # The first step includes compilation: rates are measured from here on.
            self._first_update = False
            self._t0, self._s0, self._last_print = now, step, now
            print(f"step {step}/{self.total}{loss_text} | compiled in {now - self._start:.1f}s", flush=True)
            return
        # Plain lines at most every 2 s (tiny configs log every step), always the last one.
        if (step % self.every == 0 and now - self._last_print >= 2.0) or step == self.total:
            self._last_print = now
            elapsed = now - self._t0
            rate = (step - self._s0) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"step {step}/{self.total}{loss_text} | {rate:.2f} steps/s | ETA {eta:.0f}s", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
