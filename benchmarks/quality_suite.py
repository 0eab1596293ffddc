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

SFE_METRICS = [
    ("eval/test/sync_top1", 1 / 20, "chance (1/S)"),
    ("eval/test/identity_top1", "eval/test/identity_chance", "chance (1 / speakers per group)"),
    ("eval/test/eer", None, ""),
    ("eval/test/min_dcf_p01", None, ""),
]
MDN_METRICS = [
    ("eval/test/m_lmd", "eval/test/m_lmd_static", "reference landmarks held still"),
    ("eval/test/m_lmd", "eval/test/m_lmd_mean_mouth", "reference + mean mouth motion"),
    ("eval/test/f_lmd", "eval/test/f_lmd_static", "reference landmarks held still"),
    ("eval/test/lvd_mouth", "eval/test/lvd_mouth_static", "reference landmarks held still"),
    ("eval/test/rd", "eval/test/rd_static", "static head"),
    ("eval/test/m_lmd_mixture_mean", "eval/test/m_lmd_static", "reference landmarks held still"),
    ("eval/test/rd_mixture_mean", "eval/test/rd_static", "static head"),
    ("eval/test/nll", None, ""),
    ("eval/test/component_spread", None, ""),
]
SFE_CPU = "macl-jax sfe --config configs/sfe.py:cpu --workdir runs/{name} --config.model.memory={memory}"


def _sfe_runs(label: str, prefix: str, extra: str = "") -> dict:
    return {
        f"{label} ({memory})": (f"{prefix}_{memory}", SFE_CPU.format(name=f"{prefix}_{memory}", memory=memory) + extra, SFE_METRICS)
        for memory in ("cs", "w", "wo")
    }


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
    # The cpu preset: 3200 steps, LR 1e-3 dropped x0.1 after 12 epochs (step 2448).
    **_sfe_runs("sfe cpu", "sfe_cpu"),
    # Earlier constant-LR runs of the same model: the first 1600 steps of the preset without the drop.
    **_sfe_runs("sfe cpu, constant LR, 1600 steps", "sfe_1600", " --config.train.num_steps=1600 --config.optim.lr_drop_epochs=0"),
    # MDN (MACL stage 2): the M sweep of Table 4 and f_a vs f_tt, speech branch from the cs SFE.
    **{
        f"mdn {preset}": (
            f"mdn_{preset}",
            f"macl-jax mdn --config configs/mdn.py:{preset} --workdir runs/mdn_{preset} --config.init.sfe_checkpoint=runs/sfe_cpu_cs",
            MDN_METRICS,
        )
        for preset in ("cpu", "cpu_m1", "cpu_m2", "cpu_m5", "cpu_m8", "cpu_fa")
    },
    # The pose path ablated: without the reference pose as an input, and the reference code's
    # (no pose input, Kaiming-initialised pose columns).
    "mdn cpu, no reference pose input": (
        "mdn_cpu_noref",
        "macl-jax mdn --config configs/mdn.py:cpu --workdir runs/mdn_cpu_noref --config.model.reference_pose=False "
        "--config.init.sfe_checkpoint=runs/sfe_cpu_cs",
        MDN_METRICS,
    ),
    "mdn cpu, reference code's pose path": (
        "mdn_cpu_codepose",
        "macl-jax mdn --config configs/mdn.py:cpu --workdir runs/mdn_cpu_codepose --config.model.reference_pose=False "
        "--config.model.zero_pose_init=False --config.init.sfe_checkpoint=runs/sfe_cpu_cs",
        MDN_METRICS,
    ),
}
# Runs whose training log predates a change of a metric's definition: only their re-evaluated
# selected state (`eval_results.json`) is reported. The codepose run logged RD before smoothing.
SELECTED_ONLY = {"mdn cpu, reference code's pose path"}


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
        values, step = last_values(workdir) if label not in SELECTED_ONLY else ({}, 0)
        for metric, baseline, baseline_name in metrics:
            if metric not in values:
                continue
            base = values.get(baseline) if isinstance(baseline, str) else baseline
            rows.append(Row(f"{label}: {metric.split('/')[-1]} (held-out speakers)", float(values[metric]), "",
                            float(base) if base is not None else None, baseline_name, notes=f"step {step}; `{command}`"))
        rows += selected_state_rows(label, workdir, command, metrics)
    return rows


def selected_state_rows(label: str, workdir: Path, train_command: str, metrics: list) -> list[Row]:
    """Rows for the state a run selected (`best/`), from `macl-jax eval ... --config.eval.checkpoint_dir=<workdir>/best`."""
    path = workdir / "eval_results.json"
    if not path.is_file():
        return []
    evaluated = json.loads(path.read_text())
    results = {f"eval/{name}/{k}": v for name, values in evaluated["results"].items() for k, v in values.items()}
    stage = train_command.split()[1]
    command = train_command.replace(f"macl-jax {stage} ", "macl-jax eval ", 1) + f" --config.eval.checkpoint_dir={workdir}/best"
    rows = []
    for metric, baseline, baseline_name in metrics:
        if metric in results:
            base = results.get(baseline) if isinstance(baseline, str) else baseline
            rows.append(Row(f"{label}, selected state: {metric.split('/')[-1]} (held-out speakers)", float(results[metric]), "",
                            float(base) if base is not None else None, baseline_name,
                            notes=f"step {evaluated['step']} (best/); `{command}`"))
    return rows
