"""Are an MDN run's landmark and pose errors really below the baselines? A speaker bootstrap.

    python -m benchmarks.mdn_ci runs/mdn_cpu [--against runs/other_mdn] [--checkpoint best|final|<step>]

The run is restored with its recorded config, `LandmarkEval` scores every clip of the held-out
split, and `macl_jax.metrics.bootstrap.paired_mean_difference` resamples the test speakers for
each comparison: the model's RD against the static head, its mixture-mean RD against the static
head, its M-LMD against the held-still reference and against the mean mouth motion, and, with
`--against`, RD and M-LMD against another run on the same clips. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from macl_jax.config import recorded_config
from data_pipelines import datasets
from macl_jax.evals import mdn as mdn_evals
from macl_jax.train.restore import restore_state
from macl_jax.metrics.bootstrap import paired_mean_difference
from macl_jax.train import mdn
from macl_jax.train.runtime import runtime_mesh

COMPARISONS = [("rd", "rd_static"), ("rd_mixture_mean", "rd_static"), ("m_lmd", "m_lmd_static"), ("m_lmd", "m_lmd_mean_mouth")]


def per_clip(workdir: Path, checkpoint: str, split: str, batch: int = 48) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """({metric: (clips,)}, speaker per clip, step) of one run on `split`."""
    config = recorded_config(workdir, checkpoint)
    if config.stage != "mdn":
        raise SystemExit(f"{workdir} is a {config.stage!r} run; benchmarks.mdn_ci compares MDN runs (macl-jax mdn --workdir ...)")
    mesh = runtime_mesh(config)
    task = mdn.build_task(config)
    state, step = restore_state(task, config, workdir, mesh)
    directory = datasets.dataset_dir(config.data)
    train_clips = datasets.clip_source(directory, "train")
    window = mdn_evals.clip_window(config, train=False)
    evaluator = mdn_evals.LandmarkEval(
        split, mdn.predictor(task, config), config, mdn_evals.mean_reference_offset(train_clips, window, config.eval.baseline_clips),
        mdn_evals.pixel_scale(config, train_clips),
    )
    score = jax.jit(evaluator.per_example)
    source = datasets.clip_source(directory, split)
    fields = mdn_evals.clip_fields(window)
    values: dict[str, list[np.ndarray]] = {}
    speakers = []
    for start in range(0, len(source), batch):
        examples = [source[i] for i in range(start, min(start + batch, len(source)))]
        clips = [fields(example, np.random.default_rng(0)) for example in examples]
        stacked = {k: np.stack([c[k] for c in clips]) for k in clips[0]}
        speakers.append(np.asarray([int(example["speaker"]) for example in examples]))
        for name, value in score(state, stacked).items():
            values.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in values.items()}, np.concatenate(speakers), step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--against", type=Path, help="a second MDN run scored on the same clips")
    parser.add_argument("--checkpoint", default="best", help="best (the run's selected state), final, or a step")
    parser.add_argument("--split", default="test")
    parser.add_argument("--replicates", type=int, default=2000)
    args = parser.parse_args(argv)
    values, speakers, step = per_clip(args.run, args.checkpoint, args.split)
    out = {"run": str(args.run), "step": step, "clips": int(len(speakers))}
    for a, b in COMPARISONS:
        out[f"{a} - {b}"] = paired_mean_difference(values[a], values[b], speakers, replicates=args.replicates)
    if args.against:
        other, other_speakers, other_step = per_clip(args.against, args.checkpoint, args.split)
        if not np.array_equal(speakers, other_speakers):
            raise SystemExit("the two runs were evaluated on different clips; compare runs on the same dataset")
        out["against"], out["against_step"] = str(args.against), other_step
        for name in ("rd", "rd_mixture_mean", "m_lmd", "f_lmd"):
            out[f"{name}: run - against"] = paired_mean_difference(values[name], other[name], speakers, replicates=args.replicates)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
