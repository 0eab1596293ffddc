"""Data-parallel scaling of one training stage through the real entry point.

The same command runs on 1, 2, 4 and 8 CPU devices in one process and on 2 local processes;
the figure is the steady-state throughput (the last logged interval, compilation excluded),
reported as a ratio to 1 device. On a 2-core machine, simulated devices share the cores, so
this measures the runtime's overhead (collectives, sharding), not a speed-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import Row

REPO = Path(__file__).resolve().parent.parent
STAGE_ARGS = [
    "smoke", "--config", "configs/smoke.py:default",
    "--config.train.num_steps=300", "--config.train.log_every=100", "--config.train.eval_every=0",
    "--config.checkpoint.every_steps=100000",
]
BATCH = 128


def _steady_steps_per_s(workdir: Path) -> float:
    lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines() if '"perf/steps_per_s"' in l]
    return float(lines[-1]["perf/steps_per_s"])


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for devices in (1, 2, 4, 8):
            workdir = Path(tmp) / f"d{devices}"
            subprocess.run(
                [sys.executable, "-m", "macl_jax.main", *STAGE_ARGS, "--workdir", str(workdir),
                 f"--config.runtime.num_cpu_devices={devices}"],
                cwd=REPO, env=_env(), check=True, capture_output=True, timeout=900,
            )
            throughput = _steady_steps_per_s(workdir) * BATCH
            base = base or throughput
            rows.append(Row(f"smoke step, 1 process x {devices} device(s)", throughput, "examples/s", base, "1 device"))
        workdir = Path(tmp) / "p2"
        subprocess.run(
            [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--devices_per_process", "1",
             "--", *STAGE_ARGS[1:], "--workdir", str(workdir)],
            cwd=REPO, env=_env(), check=True, capture_output=True, timeout=900,
        )
        rows.append(Row("smoke step, 2 processes x 1 device", _steady_steps_per_s(workdir) * BATCH, "examples/s", base,
                        "1 device", notes="gloo collectives over localhost"))
    return rows
