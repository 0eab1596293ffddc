"""Regression losses."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def mean_squared_error(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over all elements of (prediction - target)^2, in float32."""
    diff = prediction.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff))


def wing_constant(w: float, epsilon: float) -> float:
    """C = w - w ln(1 + w / epsilon): joins the log and linear parts of the wing loss at |x| = w."""
    return w - w * math.log1p(w / epsilon)


def wing(x: jax.Array, w: float = 10.0, epsilon: float = 2.0) -> jax.Array:
    """The wing loss of each error `x` (Feng et al., CVPR 2018), elementwise, in float32.

    w ln(1 + |x| / epsilon) for |x| < w, else |x| - C. The log part's slope, w / (epsilon + |x|),
    is largest (w / epsilon) for small errors, so small and medium landmark errors are not
    swamped by outliers as under L2; beyond w the loss grows like L1. `w` and `epsilon` are in
    the errors' units: with w = 10 the landmarks must be in pixels (or pixel-like units).
    """
    if not (w > 0 and epsilon > 0):
        raise ValueError(f"wing: w and epsilon must be positive, got w={w}, epsilon={epsilon}")
    a = jnp.abs(x.astype(jnp.float32))
    return jnp.where(a < w, w * jnp.log1p(a / epsilon), a - wing_constant(w, epsilon))


def wing_loss(prediction: jax.Array, target: jax.Array, w: float = 10.0, epsilon: float = 2.0) -> jax.Array:
    """Mean over all coordinates of the wing loss of (prediction - target)."""
    return jnp.mean(wing(prediction.astype(jnp.float32) - target.astype(jnp.float32), w, epsilon))
