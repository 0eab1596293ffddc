"""Regression losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mean_squared_error(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over all elements of (prediction - target)^2, in float32."""
    diff = prediction.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff))
