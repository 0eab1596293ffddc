"""Held-out evaluation of the renderer stage on the `test` split (speakers never seen in training).

"heldout": PSNR and SSIM (both conventions) of the prediction and of the copy-the-reference
baseline, on uint8 RGB frames. With `eval.fid` / `eval.lpips`, "image_quality" adds FID and
LPIPS-VGG16 of both on the same pairs (`macl_jax.evals.image_quality`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from data_pipelines.datasets import clip_source, dataset_dir
from data_pipelines.windows import EvaluationWindows, KeepFields, RendererPairs
from macl_jax.evals.image_quality import ImageQuality
from macl_jax.evals.sharded import MEAN, ShardedEval
from macl_jax.media.augment import to_uint8
from macl_jax.metrics.image import psnr, ssim

PAIR_FIELDS = ("target", "reference", "raster")


@functools.lru_cache(maxsize=4)  # frozen configs are hashable: one build/open per config
def dataset_path(config: Any) -> str:
    """The SynthTalk or real dataset directory of `config.data` (built on first use)."""
    return dataset_dir(config.data)


def pair_fields(window: RendererPairs) -> KeepFields:
    """A RendererPairs transform keeping only what the renderer reads."""
    return KeepFields(window, PAIR_FIELDS)


def evaluation_pairs(clips: Any, window: RendererPairs) -> EvaluationWindows:
    """Deterministic (train=False) renderer pairs of `clips`, with only the fields the renderer reads."""
    return EvaluationWindows(clips, pair_fields(window))


class RendererHeldOut:
    """PSNR / SSIM of predictions and of the copy-the-reference baseline on uint8 RGB frames."""

    name = "heldout"
    reductions = {
        f"{who}_{metric}": MEAN
        for who in ("pred", "copy_ref")
        for metric in ("psnr", "ssim_gaussian", "ssim_skimage")
    } | {"pred_l1": MEAN}

    def __init__(self, predict: Callable[[Any, dict], jax.Array]):
        self._predict = predict

    def per_example(self, state: Any, batch: dict) -> dict[str, jax.Array]:
        target = batch["target"].astype(jnp.float32)
        candidates = {"pred": to_uint8(self._predict(state, batch)), "copy_ref": batch["reference"].astype(jnp.float32)}
        out = {}
        for who, image in candidates.items():
            out[f"{who}_psnr"] = psnr(image, target, data_range=255.0)
            out[f"{who}_ssim_gaussian"] = ssim(image, target, data_range=255.0, convention="gaussian")
            out[f"{who}_ssim_skimage"] = ssim(image, target, data_range=255.0, convention="skimage")
        out["pred_l1"] = jnp.mean(jnp.abs(candidates["pred"] - target), axis=(1, 2, 3)) / 255.0
        return out

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        out = {k: float(reduced[k]) for k in self.reductions}
        out["psnr_gain_db"] = out["pred_psnr"] - out["copy_ref_psnr"]
        out["ssim_gain"] = out["pred_ssim_gaussian"] - out["copy_ref_ssim_gaussian"]
        out["count"] = float(reduced["pred_psnr/count"])
        return out


def build_evaluators(config: Any, predict: Callable[[Any, dict], jax.Array], mesh: Any) -> list[ShardedEval]:
    window = RendererPairs(min_gap=config.pairs.min_gap, train=False)
    source = evaluation_pairs(clip_source(dataset_path(config), config.eval.split), window)
    return evaluators_on(config, predict, source, mesh)


def evaluators_on(config: Any, predict: Callable[[Any, dict], jax.Array], source: Any, mesh: Any) -> list[ShardedEval]:
    """The held-out image evaluators on `source`, whose examples hold uint8 `target` and
    `reference` frames plus whatever `predict(state, batch)` reads (any image generator)."""
    if config.eval.max_examples > 0:
        source = _Head(source, config.eval.max_examples)
    evaluators = [ShardedEval(RendererHeldOut(predict), source, config.eval.global_batch_size, mesh)]
    if config.eval.fid or config.eval.lpips:
        quality = ImageQuality(predict, fid=config.eval.fid, lpips=config.eval.lpips)
        evaluators.append(ShardedEval(quality, source, config.eval.global_batch_size, mesh))
    return evaluators


class _Head:
    """The first n examples of a source."""

    def __init__(self, source: Any, n: int):
        self._source, self._n = source, min(n, len(source))

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._source[index]
