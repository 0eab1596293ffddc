"""Timing, machine description and the results table shared by all suites.

Every figure is the median of `repeats` timed runs after `warmup` untimed ones. Each suite writes
`benchmarks/results/<suite>.json`; `RESULTS.md` is regenerated from all of them, so suites can be
re-run independently.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from macl_jax.config import write_json_atomic
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train.loop import create_state, make_step_fn

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


@dataclasses.dataclass
class Row:
    """One measured figure, optionally with the baseline it is compared to."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def print_rows(rows: list[Row]) -> None:
    """Prints a suite's rows (a suite run as a script; benchmarks/run.py saves the table)."""
    for row in rows:
        ratio = f"  ratio {row.ratio:.3f}" if row.ratio else ""
        print(f"{row.name}: {row.value:.4g} {row.unit}{ratio}  {row.notes}", flush=True)


def median_time(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7) -> float:
    """Median wall time of `fn()` in seconds; `fn` must block until its result is ready."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compiled_flops(jitted: Any, *args: Any) -> float | None:
    """FLOPs of one call according to XLA's cost analysis (None if the backend gives none)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def time_train_step(
    task: Any, host_batch: dict, *, warmup: int = 2, repeats: int = 7, seed: int = 0
) -> tuple[float, float | None, Any]:
    """(median seconds, XLA-counted FLOPs, final state) of one jitted training step of `task` on one device.

    The state is threaded through the timed calls, so the step is timed as it runs in training
    (donated buffers, updated optimizer state)."""
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    state, shardings, _ = create_state(task, jax.random.key(seed), mesh)
    step = make_step_fn(task, shardings)
    key = jax.random.key(seed + 1)
    with jax.set_mesh(mesh):
        batch = to_global_batch(host_batch, mesh)
        flops = compiled_flops(step, state, batch, key)
        holder = {"state": state}

        def one_step():
            holder["state"], metrics = step(holder["state"], batch, key)
            jax.block_until_ready(metrics["loss"])

        seconds = median_time(one_step, warmup=warmup, repeats=repeats)
    return seconds, flops, holder["state"]


def matmul_peak_gflops(n: int = 2048, dtype: Any = jnp.float32) -> float:
    """Achieved GFLOP/s of a large square matmul: the practical compute ceiling of the device."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    seconds = median_time(lambda: f(a).block_until_ready(), warmup=2, repeats=7)
    return 2 * n**3 / seconds / 1e9


def peak_host_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d.device_kind) for d in jax.devices()][:1] + [f"x{jax.device_count()}"],
        "jax": jax.__version__,
        "python": platform.python_version(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Other work on the machine slows every timing: the 1-minute load average at the end.
        "load": round(os.getloadavg()[0], 1),
    }


def save_suite(suite: str, rows: list[Row], command: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{suite}.json"
    payload = {"suite": suite, "command": command, "machine": machine(), "rows": [dataclasses.asdict(r) for r in rows]}
    write_json_atomic(path, payload)
    write_markdown()
    return path


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def write_markdown() -> None:
    """Regenerates RESULTS.md from every suite's JSON."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.run`; each section names the command that produced it and the",
        "machine it ran on. Medians of 7 timed runs after 2 warm-ups. Ratios are value / baseline.",
        "",
    ]
    for path in sorted(RESULTS_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        m = data["machine"]
        lines += [
            f"## {data['suite']}",
            "",
            f"`{data['command']}` on {m['cpu']} ({m['cores']} cores), backend {m['backend']} "
            f"{' '.join(m['devices'])}, jax {m['jax']}, commit {m['commit'] or '?'}, {m['date']}"
            + (f", load average {m['load']} at the end." if "load" in m else "."),
            "",
            "| figure | value | unit | baseline | ratio | notes |",
            "|---|---|---|---|---|---|",
        ]
        for r in data["rows"]:
            ratio = r["value"] / r["baseline"] if r.get("baseline") else None
            base = f"{_fmt(r['baseline'])} ({r['baseline_name']})" if r.get("baseline") else ""
            lines.append(f"| {r['name']} | {_fmt(r['value'])} | {r['unit']} | {base} | {_fmt(ratio)} | {r['notes']} |")
        lines.append("")
    tmp = RESULTS_MD.with_name(f".{RESULTS_MD.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, RESULTS_MD)  # an interrupted run never leaves half a table
