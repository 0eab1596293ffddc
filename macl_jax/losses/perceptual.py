"""Perceptual (VGG feature L1) and style (Gram matrix) losses.

The pure functions take feature dicts {layer: (B, H, W, C)}; `perceptual_and_style` runs a frozen
`macl_jax.models.vgg.VGGFeatures` on both images first. Target features are treated as constants
(`stop_gradient`), as the reference detached them. All reductions are in float32.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp


Features = Mapping[str, jax.Array]  # {layer name: (B, H, W, C)}


def _as_f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32)


def _mean_abs(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(a - b))


def _mean_square(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b))


def _weighted_sum(
    fn: str,
    features: Features,
    target_features: Features,
    layers: Sequence[str],
    weights: Sequence[float],
    distance: Callable[[jax.Array, jax.Array], jax.Array],
    transform: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """sum_l w_l * distance(T(F_l(x)), T(F_l(y))), no gradient through the target's features."""
    if len(layers) != len(weights):
        raise ValueError(f"{fn}: {len(layers)} layers but {len(weights)} weights")
    missing = [n for n in layers if n not in features]
    if missing:
        raise ValueError(f"{fn}: features lack layer(s) {missing}; have {sorted(features)}")
    total = jnp.float32(0.0)
    for name, w in zip(layers, weights):
        a = transform(features[name])
        b = transform(jax.lax.stop_gradient(target_features[name]))
        total = total + w * distance(a, b)
    return total


def perceptual_l1(features: Features, target_features: Features, layers: Sequence[str], weights: Sequence[float]) -> jax.Array:
    """sum_l w_l * mean |F_l(x) - F_l(y)| (MakeItTalk's VGGLoss with ImageNet-normalised RGB inputs)."""
    return _weighted_sum("perceptual_l1", features, target_features, layers, weights, _mean_abs, _as_f32)


def gram_matrix(features: jax.Array) -> jax.Array:
    """Per-sample Gram matrix F^T F / (C H W): (B, H, W, C) -> (B, C, C), float32.

    Per sample (docs/decisions.md#perceptual-loss), not the reference's batch-mixed (N C, H W) Gram.
    """
    b, h, w, c = features.shape
    f = features.astype(jnp.float32).reshape(b, h * w, c)
    return jnp.einsum("bpc,bpd->bcd", f, f, precision=jax.lax.Precision.HIGHEST) / (c * h * w)


def style_loss(features: Features, target_features: Features, layers: Sequence[str], weights: Sequence[float]) -> jax.Array:
    """sum_l w_l * mean (G_l(x) - G_l(y))^2 with per-sample Gram matrices (multiply by e.g. 3e7 outside)."""
    return _weighted_sum("style_loss", features, target_features, layers, weights, _mean_square, gram_matrix)


def perceptual_and_style(
    vgg,
    images: jax.Array,
    targets: jax.Array,
    layers: Sequence[str],
    weights: Sequence[float],
    *,
    with_style: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """(perceptual L1, style MSE) of RGB images in [0, 1] through `vgg` (a frozen `VGGFeatures`).

    Both images go through one batched call (one set of convolutions over 2B images).
    """
    n = images.shape[0]
    feats = vgg(jnp.concatenate([images, targets], axis=0), layers)
    mine = {k: v[:n] for k, v in feats.items()}
    theirs = {k: v[n:] for k, v in feats.items()}
    perceptual = perceptual_l1(mine, theirs, layers, weights)
    style = style_loss(mine, theirs, layers, weights) if with_style else jnp.float32(0.0)
    return perceptual, style
