"""The `pipeline` stage: the whole MACL system on the embedded default, end to end.

    macl-jax pipeline --workdir runs/pipeline [--quick]

1. builds SynthTalk (once; later runs reuse it);
2. trains the SFE, the MDN (speech branch from the SFE run) and the renderer, each in its own
   workdir (`<workdir>/sfe`, `mdn`, `renderer`) with the stage presets named in
   `configs/pipeline.py`; each stage evaluates on the held-out speakers when it finishes;
3. renders held-out frames from the MDN's predicted landmarks and from the true ones, with the
   trained renderer and with the warp renderer, and scores them against the true frames
   (`macl_jax.infer.end_to_end`);
4. writes `report.md`, `report.json` and `plots/` (loss curves, metric bars, predicted against
   true landmark and pose tracks) and, for held-out clips, demo videos with their audio:
   reference | generated | ground truth | landmarks.

Rerunning resumes: a finished stage (its summary at the configured step) is kept, an interrupted
one continues from its last checkpoint, and the report and videos are rewritten.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from data_pipelines import datasets
from macl_jax.config import ConfigError, freeze, load_config, to_dict, write_json_atomic, write_resolved_config
from macl_jax.evals.report import write_report
from macl_jax.infer.demo import write_demo_videos
from macl_jax.infer.end_to_end import end_to_end_images
from macl_jax.stages import get_stage

STAGE_ORDER = ("sfe", "mdn", "renderer")


def stage_config(config: Any, stage: str, workdir: Path) -> ml_collections.ConfigDict:
    """The config of one stage: its preset and overrides, with the pipeline's data, seed and runtime."""
    section = config.stages[stage]
    data = config.data
    overrides = [
        *section.overrides,
        f"data.dataset={data.dataset}",
        f"data.variant={data.variant}",
        f"data.dir={data.dir}",
        f"data.worker_count={data.worker_count}",
        f"seed={config.seed}",
    ]
    if stage == "mdn":
        overrides.append(f"init.sfe_checkpoint={workdir / 'sfe'}")
    if stage == "renderer":
        overrides.append("eval.lpips=True")
    stage_cfg = load_config(section.config, overrides)
    stage_cfg.runtime = ml_collections.ConfigDict(to_dict(config.runtime))
    return stage_cfg


def finished_summary(stage_dir: Path, stage: str, num_steps: int) -> dict | None:
    """The stage's summary if a previous run of the pipeline completed it, else None."""
    path = stage_dir / f"{stage}_summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    done = summary.get("step", -1) >= num_steps and not summary.get("preempted")
    return summary if done else None


def _seconds_since(t0: float) -> float:
    return round(time.perf_counter() - t0, 1)


def run(config: Any, workdir: Path) -> dict[str, Any]:
    workdir = Path(workdir)
    # Every stage's config is resolved first: a bad override fails now, not after an hour of training.
    stage_configs = {}
    for stage in STAGE_ORDER:
        try:
            stage_configs[stage] = stage_config(config, stage, workdir)
        except ConfigError as exc:
            raise ConfigError(f"config.stages.{stage} ({config.stages[stage].config}): {exc}") from exc
    started = time.perf_counter()
    directory = datasets.dataset_dir(config.data)  # builds SynthTalk on first use
    timings = {"data_s": _seconds_since(started)}
    summaries: dict[str, dict] = {}
    for stage in STAGE_ORDER:
        stage_dir = workdir / stage
        stage_cfg = stage_configs[stage]
        kept = finished_summary(stage_dir, stage, stage_cfg.train.num_steps)
        if kept is not None:
            logging.info("pipeline: %s already trained to step %d in %s; kept", stage, kept["step"], stage_dir)
            summaries[stage] = kept
            continue
        logging.info("pipeline: training %s in %s (%s)", stage, stage_dir, config.stages[stage].config)
        t0 = time.perf_counter()
        stage_dir.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            write_resolved_config(stage_cfg, stage_dir)
        summary = get_stage(stage)(freeze(stage_cfg), stage_dir)
        summary["wall_s"] = _seconds_since(t0)
        if jax.process_index() == 0:
            write_json_atomic(stage_dir / f"{stage}_summary.json", summary)
        summaries[stage] = summary
        if summary.get("preempted"):
            return {"preempted": True, "stage": stage, "step": summary.get("step")}
    for stage in STAGE_ORDER:
        timings[f"{stage}_s"] = summaries[stage].get("wall_s", summaries[stage].get("goodput/total_s"))
    result: dict[str, Any] = {"dataset": directory, "stages": {s: str(workdir / s) for s in STAGE_ORDER}}
    if jax.process_index() == 0:
        t0 = time.perf_counter()
        summaries["end_to_end"] = end_to_end_images(workdir, config.data, config.report.e2e_clips)
        timings["end_to_end_s"] = _seconds_since(t0)
        t0 = time.perf_counter()
        videos = write_demo_videos(config, workdir, config.report.demo_clips, config.report.demo_panel_px)
        timings["videos_s"] = _seconds_since(t0)
        timings["total_s"] = _seconds_since(started)
        result |= write_report(config, workdir, summaries, videos, timings)
    return result
