"""Evaluators of the landmark MDN: landmark and pose errors on held-out clips, against two baselines.

`build_evaluators` runs `LandmarkEval` on the `validation` split (speakers seen in training; the
reference selects the best checkpoint by its mouth distance) and on `test` (speakers never seen):
M-LMD, F-LMD, mouth landmark velocity error and the in-plane rotation distance, in pixels of a
256 px crop, for the model and for two baselines; the exact NLL and how far apart the mixture
components are. The clips are the `MDNClips` windows the trainer also reads (`clip_window`,
`clip_fields`), at their fixed evaluation positions.

The model enters as a function `predict(state, batch) -> outputs` (the trainer's `predictor`),
so this module does not depend on how a stage builds or trains it.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from data_pipelines import datasets
from data_pipelines.windows import EvaluationWindows, KeepFields, MDNClips
from macl_jax.evals.sharded import MEAN, ShardedEval
from macl_jax.geometry import align_2d, dealign_2d
from macl_jax.losses import mdn_nll
from macl_jax.metrics import landmarks as lmk
from macl_jax.models.mdn_targets import FIELDS, sigmas, smooth_time, target, to_normalised_landmarks, to_pixels

# Metrics are reported in pixels of a crop of this size (docs/decisions.md#d10-landmark-metrics: 256 x 256).
METRIC_CROP_PX = 256

# (train state, batch) -> the MDN's outputs on the batch: the raw mixture ("mu", "logits",
# "sigma_raw") and the chosen track ("normalised", "pixels") with every component's ("component_pixels").
Predict = Callable[[Any, dict], dict[str, jax.Array]]


class LandmarkEval:
    """Landmark and pose errors of the MDN and of two baselines on held-out clips.

    Baselines: "static" holds the reference frame's landmarks (with its pose) still for the whole
    clip; "mean_mouth" adds the training set's mean displacement from the closed-mouth reference
    (aligned space) to the reference, i.e. an average, speech-independent mouth opening. Pose for
    RD comes from the same 2-D Procrustes fit of the 9 T-points on prediction (the smoothed output)
    and ground truth (docs/decisions.md#d10-landmark-metrics).
    `*_mixture_mean` scores the mixture mean instead of the chosen track (inference mode "mean").
    """

    reductions = {
        name: MEAN
        for name in (
            "nll", "m_lmd", "f_lmd", "lvd_mouth", "rd", "m_lmd_mixture_mean", "rd_mixture_mean", "component_spread", "alpha_max",
            "m_lmd_static", "f_lmd_static", "lvd_mouth_static", "rd_static", "m_lmd_mean_mouth", "f_lmd_mean_mouth",
        )
    }

    def __init__(self, split: str, predict: Predict, config: Any, mean_offset: np.ndarray, pixel_scale: float):
        self.name = split
        self._predict, self._config = predict, config
        self._mean_offset = jnp.asarray(mean_offset, jnp.float32)
        self._scale = pixel_scale

    def per_example(self, state: Any, batch: dict) -> dict[str, jax.Array]:
        config, px = self._config, self._scale
        regression, relative = config.model.regression, config.model.relative_pose
        p = self._predict(state, batch)
        sigma, covariance, groups = sigmas(p, config)
        y = target(batch, regression, relative)
        nll = jnp.mean(mdn_nll.mixture_nll_per_frame(p["mu"], p["logits"], sigma, y, groups, covariance=covariance), axis=-1)
        truth = batch["landmarks"] * px
        pred = p["pixels"] * px
        anchor = batch if relative else None
        mixture_mean = mdn_nll.mixture_mean(p["mu"], p["logits"])
        mean_normalised = smooth_time(to_normalised_landmarks(mixture_mean, regression, anchor), config)
        mean_track = to_pixels(mean_normalised, batch)

        B, T = truth.shape[:2]
        rows = jnp.arange(B)
        ref = batch["reference_index"]
        static = jnp.broadcast_to(batch["landmarks"][rows, ref][:, None], truth.shape) * px
        ref_angle, ref_t = batch["angle"][rows, ref], batch["translation"][rows, ref]
        moved = dealign_2d(batch["reference"] + self._mean_offset, ref_angle, ref_t)  # (B, 68, 2) normalised
        mean_mouth = jnp.broadcast_to(to_pixels(moved[:, None], batch), truth.shape) * px

        pred_angle = align_2d(p["normalised"]).angle
        static_angle = jnp.broadcast_to(ref_angle[:, None], (B, T))

        comps = p["component_pixels"] * px  # (B, T, M, 68, 2)
        M = comps.shape[2]
        if M > 1:
            diff = jnp.linalg.norm(comps[:, :, :, None] - comps[:, :, None], axis=-1).mean(-1)  # (B, T, M, M)
            spread = jnp.sum(diff, axis=(-1, -2)).mean(-1) / (M * (M - 1))
        else:
            spread = jnp.zeros((B,), jnp.float32)
        alpha = jax.nn.softmax(p["logits"], axis=-1)
        return {
            "nll": nll,
            "m_lmd": lmk.m_lmd(pred, truth),
            "f_lmd": lmk.f_lmd(pred, truth),
            "lvd_mouth": lmk.landmark_velocity_error(pred, truth, points="mouth"),
            "rd": lmk.angle_distance_2d(pred_angle, batch["angle"]),
            "m_lmd_mixture_mean": lmk.m_lmd(mean_track * px, truth),
            "rd_mixture_mean": lmk.angle_distance_2d(align_2d(mean_normalised).angle, batch["angle"]),
            "component_spread": spread,
            "alpha_max": jnp.mean(jnp.max(alpha, axis=-1), axis=-1),
            "m_lmd_static": lmk.m_lmd(static, truth),
            "f_lmd_static": lmk.f_lmd(static, truth),
            "lvd_mouth_static": lmk.landmark_velocity_error(static, truth, points="mouth"),
            "rd_static": lmk.angle_distance_2d(static_angle, batch["angle"]),
            "m_lmd_mean_mouth": lmk.m_lmd(mean_mouth, truth),
            "f_lmd_mean_mouth": lmk.f_lmd(mean_mouth, truth),
        }

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        out = {k: float(reduced[k]) for k in self.reductions}
        out["m_lmd_vs_static"] = out["m_lmd"] / out["m_lmd_static"]
        out["m_lmd_vs_mean_mouth"] = out["m_lmd"] / out["m_lmd_mean_mouth"]
        out["rd_vs_static"] = out["rd"] / out["rd_static"] if out["rd_static"] > 0 else float("nan")
        out["count"] = float(reduced["nll/count"])
        return out


def clip_window(config: Any, train: bool) -> MDNClips:
    """The MDN's clip window: random positions for training, fixed ones for evaluation."""
    wc = config.windows
    return MDNClips(clip_frames=wc.clip_frames, smooth=wc.smooth, train=train)


def clip_fields(window: MDNClips) -> KeepFields:
    """An MDNClips transform keeping only what the MDN reads."""
    return KeepFields(window, FIELDS)


def frame_size(clips: Any) -> int:
    """Side of the stored (square) frames, read from the first clip's first JPEG header."""
    with Image.open(io.BytesIO(clips[0]["frames"][0])) as image:
        return int(image.size[0])


def mean_reference_offset(clips: Any, window: MDNClips, limit: int) -> np.ndarray:
    """Training-set mean of (aligned landmarks - closed-mouth reference), (68, 2): the mean-mouth baseline."""
    window = dataclasses.replace(window, train=False, audio=False)
    count = min(len(clips), limit) if limit > 0 else len(clips)
    index = np.linspace(0, len(clips) - 1, count).round().astype(int)
    deltas = [(lambda w: (w["aligned"] - w["reference"][None]).mean(0))(window(clips[int(i)], np.random.default_rng(0))) for i in index]
    return np.mean(deltas, axis=0).astype(np.float32)


def pixel_scale(config: Any, clips: Any) -> float:
    """Factor from stored pixels to those of the metric crop (`eval.pixel_scale`, or from the frame size when 0)."""
    scale = config.eval.pixel_scale
    return scale if scale > 0 else METRIC_CROP_PX / frame_size(clips)


def build_evaluators(config: Any, predict: Predict, mesh: Any) -> list[ShardedEval]:
    """A `LandmarkEval` for each of the `validation` and `test` splits the dataset has."""
    directory = datasets.dataset_dir(config.data)
    window = clip_window(config, train=False)
    train_clips = datasets.clip_source(directory, "train")
    offset = mean_reference_offset(train_clips, window, config.eval.baseline_clips)
    scale = pixel_scale(config, train_clips)
    evaluators: list[ShardedEval] = []
    for split in ("validation", "test"):
        if split in datasets.splits(directory):
            evaluators.append(
                ShardedEval(
                    LandmarkEval(split, predict, config, offset, scale),
                    EvaluationWindows(datasets.clip_source(directory, split), clip_fields(window)),
                    config.eval.global_batch_size,
                    mesh,
                    reducer=evaluators[0].reducer if evaluators else None,
                )
            )
    return evaluators
