"""Adversarial losses on discriminator logits (any shape; means in float32) and feature matching.

`d_*` take the logits of real and fake samples; the caller stops the gradient into the generator
(the fake images fed to D are `stop_gradient`-ed in the discriminator step).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

GAN_LOSSES = ("hinge", "lsgan")


def _f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32)


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return jnp.mean(jax.nn.relu(1.0 - _f32(real_logits))) + jnp.mean(jax.nn.relu(1.0 + _f32(fake_logits)))


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean D(fake)."""
    return -jnp.mean(_f32(fake_logits))


def lsgan_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Least squares (pix2pix 'lsgan'): 0.5 (mean (D(real) - 1)^2 + mean D(fake)^2)."""
    return 0.5 * (jnp.mean(jnp.square(_f32(real_logits) - 1.0)) + jnp.mean(jnp.square(_f32(fake_logits))))


def lsgan_g_loss(fake_logits: jax.Array) -> jax.Array:
    """mean (D(fake) - 1)^2."""
    return jnp.mean(jnp.square(_f32(fake_logits) - 1.0))


def d_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    if kind == "hinge":
        return hinge_d_loss(real_logits, fake_logits)
    if kind == "lsgan":
        return lsgan_d_loss(real_logits, fake_logits)
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def g_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
    if kind == "hinge":
        return hinge_g_loss(fake_logits)
    if kind == "lsgan":
        return lsgan_g_loss(fake_logits)
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {GAN_LOSSES}")


def feature_matching_loss(fake_features: Sequence[jax.Array], real_features: Sequence[jax.Array]) -> jax.Array:
    """Mean over layers of mean |F(fake) - F(real)| (pix2pixHD), real features held constant."""
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(
            f"feature_matching_loss: need equally many (>= 1) layers, got {len(fake_features)} and {len(real_features)}"
        )
    total = jnp.float32(0.0)
    for a, b in zip(fake_features, real_features):
        total = total + jnp.mean(jnp.abs(_f32(a) - _f32(jax.lax.stop_gradient(b))))
    return total / len(fake_features)
