"""Pixel losses between images (any layout; reductions in float32)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l1_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute difference over every element (PyTorch `nn.L1Loss()`)."""
    if prediction.shape != target.shape:
        raise ValueError(f"l1_loss: prediction {prediction.shape} and target {target.shape} differ in shape")
    return jnp.mean(jnp.abs(prediction.astype(jnp.float32) - target.astype(jnp.float32)))
