"""How well can the in-plane head angle be predicted at all? Reference points for the MDN's RD.

    python -m benchmarks.mdn_pose_bounds [--config configs/mdn.py:cpu] [--train-clips 800]

On the held-out split, from the ground-truth angles of the evaluation windows (the same windows
and reference frames as `LandmarkEval`), prints the mean absolute angle error in degrees of:
- `static`: the reference frame's angle held still (the baseline RD of the MDN evaluator);
- `pull_to_mean`: the reference angle pulled towards the training mean by a factor fitted on
  training clips for each distance (in frames) from the reference, i.e. what a model that sees
  the reference pose and knows where the reference sits in the clip could learn without audio;
- `pull_to_mean_constant`: the same with one factor for every frame (the model does not know
  where the reference sits);
- `oracle_clip_mean`: each clip's own mean angle held still (needs the truth of the whole clip).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from data_pipelines import datasets
from macl_jax.config import load_config
from macl_jax.evals.mdn import clip_window


def angles(config, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """((clips, T) angle in degrees, (clips,) reference index) of a split's evaluation windows."""
    window = dataclasses.replace(clip_window(config, train=False), audio=False)
    source = datasets.clip_source(datasets.dataset_dir(config.data), split)
    count = min(len(source), limit) if limit > 0 else len(source)
    index = np.linspace(0, len(source) - 1, count).round().astype(int)
    clips = [window(source[int(i)], np.random.default_rng(0)) for i in index]
    return np.degrees(np.stack([c["angle"] for c in clips])), np.asarray([c["reference_index"] for c in clips])


def pull_factors(angle: np.ndarray, ref: np.ndarray, centre: float, per_distance: bool) -> np.ndarray:
    """Least-squares factor b of angle(t) - angle(ref) = -b (angle(ref) - centre), per |t - ref| or one for all."""
    rows = np.arange(len(ref))
    start = angle[rows, ref][:, None]
    x = np.broadcast_to(start - centre, angle.shape)
    y = angle - start
    distance = np.abs(np.arange(angle.shape[1])[None] - ref[:, None])
    if not per_distance:
        return np.full(angle.shape[1], -(x * y).sum() / (x * x).sum())
    return np.asarray([-(x[distance == k] * y[distance == k]).sum() / max((x[distance == k] ** 2).sum(), 1e-12)
                       for k in range(angle.shape[1])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/mdn.py:cpu")
    parser.add_argument("--split", default="test")
    parser.add_argument("--train-clips", type=int, default=800, help="evenly spaced training clips for the fit (0 = all)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value (e.g. data.dir=data/tfds)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    train_angle, train_ref = angles(config, "train", args.train_clips)
    angle, ref = angles(config, args.split)
    rows = np.arange(len(ref))
    centre = float(train_angle[np.arange(len(train_ref)), train_ref].mean())
    start = angle[rows, ref][:, None]
    distance = np.abs(np.arange(angle.shape[1])[None] - ref[:, None])
    out = {"split": args.split, "clips": int(len(ref)), "static": float(np.abs(angle - start).mean())}
    for name, per_distance in (("pull_to_mean", True), ("pull_to_mean_constant", False)):
        b = pull_factors(train_angle, train_ref, centre, per_distance)[distance]
        out[name] = float(np.abs(angle - (start - b * (start - centre))).mean())
    out["oracle_clip_mean"] = float(np.abs(angle - angle.mean(axis=1, keepdims=True)).mean())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
