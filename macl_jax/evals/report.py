"""The pipeline's report: `report.json`, `report.md` and `plots/` from the stages' runs.

Figures are the held-out (test speakers) metrics each stage computed on its final state, beside
the baselines the evaluators compute on the same clips: chance for sync retrieval, the reference
landmarks held still for M-LMD / F-LMD / RD, and copying the reference frame for PSNR / SSIM /
LPIPS.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from macl_jax.config import load_config, write_json_atomic

# (stage, summary key, label, baseline key or a fixed chance value, baseline label, lower is better)
ROWS = (
    ("sfe", "test_sync_top1", "sync top-1 (audio -> video step)", "chance_sync", "chance", False),
    ("sfe", "test_sync_top5", "sync top-5", None, "", False),
    ("sfe", "test_identity_top1", "speaker identity top-1 (audio -> video, one clip per speaker)", "test_identity_chance", "chance", False),
    ("sfe", "test_eer", "speaker verification EER", None, "", True),
    ("sfe", "test_min_dcf_p01", "minDCF (p 0.01)", None, "", True),
    ("mdn", "test_m_lmd", "M-LMD (px at 256)", "test_m_lmd_static", "reference held still", True),
    ("mdn", "test_m_lmd", "M-LMD (px at 256)", "test_m_lmd_mean_mouth", "mean mouth", True),
    ("mdn", "test_f_lmd", "F-LMD (px at 256)", "test_f_lmd_static", "reference held still", True),
    ("mdn", "test_rd", "RD (degrees)", "test_rd_static", "static head", True),
    ("renderer", "heldout_pred_psnr", "PSNR (dB), ground-truth landmarks", "heldout_copy_ref_psnr", "copy the reference", False),
    ("renderer", "heldout_pred_ssim_gaussian", "SSIM, ground-truth landmarks", "heldout_copy_ref_ssim_gaussian", "copy the reference", False),
    ("renderer", "image_quality_lpips", "LPIPS-VGG16, ground-truth landmarks", "image_quality_lpips_copy_ref", "copy the reference", True),
)

# The end-to-end image rows (macl_jax.infer.end_to_end): the renderer on landmarks predicted from
# the speech and on the true ones, each beside copying the reference frame and beside the warp
# renderer on the same landmarks. (landmarks key, landmarks label)
E2E_SOURCES = (("pred", "landmarks from speech (MDN)"), ("true", "ground-truth landmarks"))
E2E_METRICS = (("psnr", "PSNR (dB)", False), ("ssim", "SSIM", False), ("lpips", "LPIPS-VGG16", True))


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def metric_rows(summaries: dict[str, dict], config: Any) -> list[dict[str, Any]]:
    """One row per reported metric: value, baseline and which is better."""
    chance = 1.0 / _sync_steps(config)
    rows = []
    for stage, key, label, base_key, base_label, lower in ROWS:
        summary = summaries.get(stage, {})
        value = _num(summary.get(key))
        if value is None:
            continue
        baseline = chance if base_key == "chance_sync" else _num(summary.get(base_key)) if base_key else None
        row = {"stage": stage, "metric": label, "key": key, "value": value, "lower_is_better": lower}
        if baseline is not None:
            row |= {"baseline": baseline, "baseline_name": base_label, "beats_baseline": value < baseline if lower else value > baseline}
        rows.append(row)
    return rows + end_to_end_rows(summaries.get("end_to_end", {}))


def end_to_end_rows(scores: dict[str, float]) -> list[dict[str, Any]]:
    """Rows of the end-to-end image table: the trained renderer, the warp and the copied reference."""
    rows = []
    for source, source_label in E2E_SOURCES:
        for metric, label, lower in E2E_METRICS:
            value = _num(scores.get(f"e2e_{source}_model_{metric}"))
            if value is None:
                continue
            row = {"stage": "end to end", "metric": f"{label}, {source_label}", "key": f"e2e_{source}_model_{metric}",
                   "value": value, "lower_is_better": lower}
            for suffix, base_key, base_label in (("", f"e2e_copy_ref_{metric}", "copy the reference"),
                                                 ("2", f"e2e_{source}_warp_{metric}", "warp renderer, same landmarks")):
                baseline = _num(scores.get(base_key))
                if baseline is not None:
                    row |= {f"baseline{suffix}": baseline, f"baseline{suffix}_name": base_label,
                            f"beats_baseline{suffix}": value < baseline if lower else value > baseline}
            rows.append(row)
    return rows


def _sync_steps(config: Any) -> int:
    sfe = load_config(config.stages.sfe.config, config.stages.sfe.overrides)
    return sfe.windows.num_steps


def _pyplot():
    """matplotlib.pyplot drawing to files (Agg)."""
    import matplotlib  # deferred: slow to import, and only the report draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(workdir: Path, path: Path) -> Path:
    """Training loss of each stage against its step."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, stage in zip(axes, ("sfe", "mdn", "renderer")):
        steps, losses = [], []
        log = workdir / stage / "metrics.jsonl"
        if log.is_file():
            for line in log.read_text().splitlines():
                row = json.loads(line)
                key = "loss" if "loss" in row else "g_loss" if "g_loss" in row else None
                if key and _num(row.get(key)) is not None:
                    steps.append(row["step"])
                    losses.append(row[key])
        ax.plot(steps, losses, color="tab:blue")
        ax.set_title(f"{stage}: training loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    """Each metric that has a baseline: the model's bar beside the baseline's."""
    plt = _pyplot()
    with_base = [r for r in rows if "baseline" in r]
    fig, axes = plt.subplots(1, len(with_base), figsize=(2.1 * len(with_base), 3.2))
    for ax, row in zip(np.atleast_1d(axes), with_base):
        ax.bar([0, 1], [row["value"], row["baseline"]], color=["tab:blue", "tab:gray"])
        ax.set_xticks([0, 1], ["model", row["baseline_name"]], rotation=30, ha="right", fontsize=7)
        ax.set_title(row["metric"] + (" (lower better)" if row["lower_is_better"] else ""), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(row: dict, key: str) -> str:
    return f"{row[key]:.4g}" if key in row else ""


def _verdict(row: dict, suffix: str) -> str:
    key = f"beats_baseline{suffix}"
    return ("yes" if row[key] else "no") if key in row else ""


def _markdown(config: Any, rows: list[dict], timings: dict, videos: list[str], plots: list[str], workdir: Path) -> str:
    rel = lambda p: str(Path(p).relative_to(workdir))  # noqa: E731
    lines = [
        f"# macl-jax pipeline report ({config.preset})",
        "",
        f"Data: SynthTalk `{config.data.variant}`; metrics on the held-out test speakers, final state of each stage.",
        "",
        "| stage | metric | model | baseline | baseline value | better than baseline |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["stage"] != "end to end":
            lines.append(f"| {r['stage']} | {r['metric']} | {r['value']:.4g} | {r.get('baseline_name', '')} | {_fmt(r, 'baseline')} | {_verdict(r, '')} |")
    e2e = [r for r in rows if r["stage"] == "end to end"]
    if e2e:
        lines += [
            "",
            "End to end: the same held-out frames rendered from landmarks, scored against the true frames "
            "(`macl_jax/infer/end_to_end.py`). The first rows are what a user gets from speech; the "
            "ground-truth-landmark rows isolate the renderer.",
            "",
            "| metric | MACL renderer | copy the reference | better | warp renderer, same landmarks | better |",
            "|---|---|---|---|---|---|",
        ]
        for r in e2e:
            lines.append(f"| {r['metric']} | {r['value']:.4g} | {_fmt(r, 'baseline')} | {_verdict(r, '')} | {_fmt(r, 'baseline2')} | {_verdict(r, '2')} |")
    lines += ["", "| part | seconds (this invocation; a kept stage shows its own run) |", "|---|---|"] + [f"| {k[:-2]} | {v} |" for k, v in timings.items() if v is not None]
    lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({rel(p)})" for p in plots]
    lines += ["", "## Demo videos (reference | generated | ground truth | landmarks, with the clip's audio)", ""]
    lines += [f"- [{Path(v).name}]({rel(v)})" for v in videos]
    return "\n".join(lines) + "\n"


def write_report(config: Any, workdir: Path, summaries: dict[str, dict], videos: list[str], timings: dict) -> dict[str, Any]:
    """Writes report.json, report.md and plots/; returns the report's paths and rows."""
    workdir = Path(workdir)
    plot_dir = workdir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    rows = metric_rows(summaries, config)
    plots = [str(loss_curves(workdir, plot_dir / "loss_curves.png")), str(metric_bars(rows, plot_dir / "metric_bars.png"))]
    for track in sorted((workdir / "mdn" / "plots").glob("test_clip*.png")):
        plots.append(str(shutil.copy(track, plot_dir / f"mdn_tracks_{track.name}")))
    report = {"preset": config.preset, "variant": config.data.variant, "metrics": rows, "timings_s": timings, "videos": videos, "plots": plots}
    write_json_atomic(workdir / "report.json", report)
    markdown = workdir / "report.md"
    tmp = markdown.with_name(".report.md.tmp")
    tmp.write_text(_markdown(config, rows, timings, videos, plots, workdir))
    tmp.replace(markdown)
    return {"report": str(workdir / "report.md"), "metrics": {r["key"]: r["value"] for r in rows}, "videos": videos}
