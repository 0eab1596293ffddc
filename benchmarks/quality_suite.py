"""Quality of the CPU-sized acceptance runs, read from their workdirs' final evaluations.

Each row is the last logged value of an evaluation metric in `<workdir>/metrics.jsonl`, with the
baseline it is judged against (chance, a copy-the-reference renderer, ...). The runs themselves are
made by the commands in `RUNS`; a run whose workdir is missing is skipped, so the suite can be
re-run after any subset of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.harness import Row

RUNS_DIR = Path(os.environ.get("MACL_RUNS_DIR", "runs"))

# label -> (workdir, command that trains it, [(metric, baseline metric or fixed baseline, baseline name)])
RUNS = {
    "renderer cpu": (
        "renderer_cpu",
        "macl-jax renderer --config configs/renderer.py:cpu --workdir runs/renderer_cpu",
        [
            ("eval/heldout/pred_psnr", "eval/heldout/copy_ref_psnr", "copy-the-reference"),
            ("eval/heldout/pred_ssim_gaussian", "eval/heldout/copy_ref_ssim_gaussian", "copy-the-reference"),
            ("eval/heldout/pred_ssim_skimage", "eval/heldout/copy_ref_ssim_skimage", "copy-the-reference"),
        ],
    ),
    **{
        f"sfe cpu ({memory})": (
            f"sfe_cpu_{memory}",
            f"macl-jax sfe --config configs/sfe.py:cpu --workdir runs/sfe_cpu_{memory} --config.model.memory={memory}",
            [
                ("eval/test/sync_top1", 1 / 20, "chance (1/S)"),
                ("eval/test/identity_top1", 1 / 16, "chance (1/16)"),
                ("eval/test/eer", None, ""),
                ("eval/test/min_dcf_p01", None, ""),
            ],
        )
        for memory in ("cs", "w", "wo")
    },
    # The same runs continued to 1600 steps (the preset's LR is constant, so this is the preset
    # with --config.train.num_steps=1600): copy runs/sfe_cpu_<m> to runs/sfe_1600_<m> first.
    **{
        f"sfe cpu, 1600 steps ({memory})": (
            f"sfe_1600_{memory}",
            f"macl-jax sfe --config configs/sfe.py:cpu --workdir runs/sfe_1600_{memory} --config.model.memory={memory} "
            "--config.train.num_steps=1600",
            [
                ("eval/test/sync_top1", 1 / 20, "chance (1/S)"),
                ("eval/test/identity_top1", 1 / 16, "chance (1/16)"),
                ("eval/test/eer", None, ""),
                ("eval/test/min_dcf_p01", None, ""),
            ],
        )
        for memory in ("cs", "w", "wo")
    },
}


def last_values(workdir: Path) -> tuple[dict[str, float], int]:
    """The last logged value of every metric, and the last step."""
    values: dict[str, float] = {}
    step = 0
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        step = max(step, int(record.get("step", 0)))
        values.update({k: v for k, v in record.items() if isinstance(v, (int, float))})
    return values, step


def run() -> list[Row]:
    rows: list[Row] = []
    for label, (name, command, metrics) in RUNS.items():
        workdir = RUNS_DIR / name
        if not (workdir / "metrics.jsonl").is_file():
            continue
        values, step = last_values(workdir)
        for metric, baseline, baseline_name in metrics:
            if metric not in values:
                continue
            base = values.get(baseline) if isinstance(baseline, str) else baseline
            rows.append(Row(f"{label}: {metric.split('/')[-1]} (held-out speakers)", float(values[metric]), "",
                            float(base) if base is not None else None, baseline_name, notes=f"step {step}; `{command}`"))
    return rows
