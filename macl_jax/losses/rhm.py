"""Losses of the Rhythmic Head Motion image generator (Chen et al., ECCV 2020), pure and float32.

The generator total is a plain sum (weights in `RHM_LOSS_WEIGHTS`, docs/rhm_training.md#losses):

    adversarial + 10 feature matching + 10 VGG + 10 (warp_ref + warp_ani) + 10 (flow_ref + flow_ani)

and the discriminator minimises `discriminator_loss`. "Fake variants" are the generator's final
image and its raw image (the decoder pass conditioned on the landmarks only); the adversarial,
feature-matching and VGG terms are summed over them.

Discriminator outputs are those of `MultiscalePatchGAN`: per scale `(logits, features)`, where
`features` are the hidden activations (every layer but the last, the logits). Images are in
[-1, 1]; flows are in pixels, (dx, dy) in the last axis, as `macl_jax.geometry.resample.warp` reads
them. No model is imported here: the VGG network comes in as a callable.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from macl_jax.geometry.resample import warp
from macl_jax.losses.gan import feature_matching_loss, hinge_d_loss, hinge_g_loss
from macl_jax.losses.image import l1_loss
from macl_jax.losses.perceptual import perceptual_l1

# Per scale: (logits (B, h, w, 1), [hidden features (B, h_l, w_l, C_l)]).
ScaleOutputs = Sequence[tuple[jax.Array, Sequence[jax.Array]]]
# `features(images in [0, 1], layers) -> {layer: (B, H, W, C)}`, e.g. a frozen `VGGFeatures`.
FeatureFn = Callable[[jax.Array, Sequence[str]], Mapping[str, jax.Array]]

# The authors weight VGG19 relu1_1 ... relu5_1 by 1/32 ... 1. Only VGG16 ships offline; its first
# ReLU of each block is the first conv after the same pooling stages (relu1_1 to relu3_1 at the
# same depth, relu4_1 and relu5_1 one and two convs shallower), so the names and weights carry
# over, as in the renderer's perceptual loss (docs/rhm_training.md#vgg-substitution).
RHM_VGG_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
RHM_VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

RHM_LOSS_WEIGHTS = {"adversarial": 1.0, "feature_matching": 10.0, "vgg": 10.0, "warp": 10.0, "flow": 10.0}

LAYER_REDUCTIONS = ("sum", "mean")


def _check_scales(fn: str, real: ScaleOutputs, fake: ScaleOutputs) -> None:
    if len(real) != len(fake) or not real:
        raise ValueError(f"{fn}: real and fake outputs need equally many (>= 1) scales, got {len(real)} and {len(fake)}")


def generator_adversarial_loss(fake_outputs: Sequence[ScaleOutputs]) -> jax.Array:
    """sum over fake variants of (mean over scales of -mean D_s(fake)): the hinge G loss."""
    if not fake_outputs:
        raise ValueError("generator_adversarial_loss: need at least one fake variant")
    total = jnp.float32(0.0)
    for scales in fake_outputs:
        total = total + sum(hinge_g_loss(logits) for logits, _ in scales) / len(scales)
    return total


def discriminator_loss(real_outputs: ScaleOutputs, fake_outputs: Sequence[ScaleOutputs]) -> jax.Array:
    """sum over fake variants of mean over scales of [mean relu(1 - D_s(real)) + mean relu(1 + D_s(fake))].

    The real term is counted once per fake variant, as the authors' code does (it scores each
    variant against the real image separately). The caller feeds D `stop_gradient`-ed fakes.
    """
    if not fake_outputs:
        raise ValueError("discriminator_loss: need at least one fake variant")
    total = jnp.float32(0.0)
    for scales in fake_outputs:
        _check_scales("discriminator_loss", real_outputs, scales)
        per_scale = [hinge_d_loss(r, f) for (r, _), (f, _) in zip(real_outputs, scales)]
        total = total + sum(per_scale) / len(per_scale)
    return total


def multiscale_feature_matching(
    real_outputs: ScaleOutputs, fake_outputs: Sequence[ScaleOutputs], *, layer_reduction: str = "sum"
) -> jax.Array:
    """sum over fake variants, sum over scales of 1/num_D * (sum or mean over hidden layers) of
    mean |D_l(fake) - D_l(real)|, real features held constant (unweighted: multiply by 10).

    "sum" over layers is what few-shot-vid2vid (the authors' base) computes; "mean" is pix2pixHD's
    per-layer normalisation up to a constant, and `losses.gan.feature_matching_loss`'s reduction.
    """
    if layer_reduction not in LAYER_REDUCTIONS:
        raise ValueError(f"multiscale_feature_matching: layer_reduction must be one of {LAYER_REDUCTIONS}, got {layer_reduction!r}")
    if not fake_outputs:
        raise ValueError("multiscale_feature_matching: need at least one fake variant")
    total = jnp.float32(0.0)
    for scales in fake_outputs:
        _check_scales("multiscale_feature_matching", real_outputs, scales)
        for (_, real_feats), (_, fake_feats) in zip(real_outputs, scales):
            fm = feature_matching_loss(fake_feats, real_feats)  # mean over layers
            if layer_reduction == "sum":
                fm = fm * len(fake_feats)
            total = total + fm / len(scales)
    return total


def vgg_loss(
    features: FeatureFn,
    fakes: Sequence[jax.Array],
    real: jax.Array,
    layers: Sequence[str] = RHM_VGG_LAYERS,
    weights: Sequence[float] = RHM_VGG_WEIGHTS,
) -> jax.Array:
    """sum over fakes of sum_l w_l mean |phi_l(fake) - phi_l(real)| (unweighted: multiply by 10).

    Images are (B, H, W, 3) in [-1, 1]; they reach `features` as [0, 1], where the project's
    `VGGFeatures` applies the ImageNet normalisation its weights expect (the authors fed [-1, 1]
    un-normalised). All fakes and the real image go through one batched call.
    """
    if not fakes:
        raise ValueError("vgg_loss: need at least one fake image")
    n = real.shape[0]
    for fake in fakes:
        if fake.shape != real.shape:
            raise ValueError(f"vgg_loss: fake {fake.shape} and real {real.shape} differ in shape")
    images = jnp.concatenate([*fakes, real], axis=0).astype(jnp.float32)
    feats = features((images + 1.0) * 0.5, layers)
    real_feats = {k: v[len(fakes) * n :] for k, v in feats.items()}
    total = jnp.float32(0.0)
    for i in range(len(fakes)):
        fake_feats = {k: v[i * n : (i + 1) * n] for k, v in feats.items()}
        total = total + perceptual_l1(fake_feats, real_feats, layers, weights)
    return total


def warp_loss(source: jax.Array, flow: jax.Array, target: jax.Array) -> jax.Array:
    """mean |warp(source, flow) - target|: the warped reference (or 3-D render) should already look
    like the target. source, target (B, H, W, C); flow (B, H, W, 2) in pixels, backward
    (output pixel p samples source at p + flow(p)). Unweighted: multiply by 10."""
    return l1_loss(warp(source.astype(jnp.float32), flow.astype(jnp.float32)), target)


def flow_loss(flow: jax.Array, flow_gt: jax.Array, confidence: jax.Array) -> jax.Array:
    """mean |(flow - flow_gt) * confidence| over all elements of (B, H, W, 2).

    `confidence` (B, H, W, 1) or (B, H, W) in [0, 1] says where the ground truth holds (on
    SynthTalk: pixels where the mesh correspondence is visible in both images). Both flows in
    pixels. Unweighted: multiply by 10.
    """
    if flow.shape != flow_gt.shape or flow.shape[-1] != 2:
        raise ValueError(f"flow_loss: flow {flow.shape} and flow_gt {flow_gt.shape} must both be (B, H, W, 2)")
    conf = confidence.astype(jnp.float32)
    if conf.ndim == flow.ndim - 1:
        conf = conf[..., None]
    if conf.shape != (*flow.shape[:-1], 1):
        raise ValueError(f"flow_loss: confidence {confidence.shape} must be (B, H, W) or (B, H, W, 1) for flow {flow.shape}")
    diff = flow.astype(jnp.float32) - jax.lax.stop_gradient(flow_gt.astype(jnp.float32))
    return jnp.mean(jnp.abs(diff * jax.lax.stop_gradient(conf)))


def background_masked(image: jax.Array, foreground: jax.Array, fill: float = -1.0) -> jax.Array:
    """`image` where `foreground` (B, H, W, 1) is 1, `fill` (black in [-1, 1]) elsewhere.

    The target of the 3-D-render warp: only the face the render covers can be warped from it, so
    the ground truth's background is blanked out (the authors blank the pixels where the render is
    darker than 10/255; our rasteriser knows its coverage exactly).
    """
    m = foreground.astype(jnp.float32)
    return image.astype(jnp.float32) * m + fill * (1.0 - m)
