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
_NO_EVAL = ["--config.train.eval_every=0", "--config.checkpoint.every_steps=100000"]
# stage -> (entry-point arguments, global batch). The SFE runs the tiny preset on SynthTalk tiny
# (built under data/tfds on first use) with a global batch of 8: one clip per device at 8 devices.
STAGES = {
    "smoke": (["smoke", "--config", "configs/smoke.py:default", "--config.train.num_steps=300",
               "--config.train.log_every=100", *_NO_EVAL], 128),
    "sfe": (["sfe", "--config", "configs/sfe.py:tiny", "--config.train.num_steps=40", "--config.train.log_every=20",
             "--config.train.global_batch_size=8", *_NO_EVAL], 8),
}


def _steady_steps_per_s(workdir: Path) -> float:
    lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines() if '"perf/steps_per_s"' in l]
    return float(lines[-1]["perf/steps_per_s"])


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _stage_rows(stage: str, tmp: Path) -> list[Row]:
    args, batch = STAGES[stage]
    rows: list[Row] = []
    base = None
    for devices in (1, 2, 4, 8):
        workdir = tmp / f"{stage}_d{devices}"
        subprocess.run(
            [sys.executable, "-m", "macl_jax.main", *args, "--workdir", str(workdir),
             f"--config.runtime.num_cpu_devices={devices}"],
            cwd=REPO, env=_env(), check=True, capture_output=True, timeout=1800,
        )
        throughput = _steady_steps_per_s(workdir) * batch
        base = base or throughput
        rows.append(Row(f"{stage} step, 1 process x {devices} device(s)", throughput, "examples/s", base, "1 device"))
    workdir = tmp / f"{stage}_p2"
    subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--devices_per_process", "1",
         "--", *args, "--workdir", str(workdir)],
        cwd=REPO, env=_env(), check=True, capture_output=True, timeout=1800,
    )
    rows.append(Row(f"{stage} step, 2 processes x 1 device", _steady_steps_per_s(workdir) * batch, "examples/s", base,
                    "1 device", notes="gloo collectives over localhost"))
    return rows


def run(stages: tuple[str, ...] = ("smoke", "sfe")) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        return [row for stage in stages for row in _stage_rows(stage, Path(tmp))]
