"""PatchGAN discriminators (pix2pix `NLayerDiscriminator`, pix2pixHD `MultiscaleDiscriminator`), NHWC.

`PatchGAN`: 4x4 convs: `n_layers` stride-2 convs (ndf, 2 ndf, ... capped at 8 ndf), one stride-1
conv, then a stride-1 conv to one logit per patch. LeakyReLU(0.2) after every conv but the last;
instance norm (or none) after every conv but the first and the last. Each activation is returned
for feature matching. Logits are float32.

Two options serve the pix2pixHD / few-shot-vid2vid family (the Rhythmic Head Motion
discriminator, `rhm_discriminator`): `padding=2` (their `ceil((4 - 1) / 2)`; pix2pix pads 1, the
default here) and `spectral_norm=True`, which spectrally normalises the hidden convs (those
followed by the norm: all but the first and the last, as their `spectralinstance` norm does) with
`SNConv`. The normalised convs then run in PyTorch's train/eval regime: `model.eval()` stops the
power iteration (docs/rhm_training.md#discriminator).

`MultiscalePatchGAN` runs `num_d` independent PatchGANs, the first on the input and each next one
on the input average-pooled once more (3x3, stride 2, padding 1, padded cells not counted), and
returns [(logits, features)] from the finest scale to the coarsest.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.renderers.resunet import TORCH_CONV_INIT
from macl_jax.models.spectral import SNConv

NORMS = ("instance", "none")

# few-shot-vid2vid's `init_type=xavier, init_variance=0.02`: torch's xavier_normal_ (an untruncated
# normal, std = gain * sqrt(2 / (fan_in + fan_out))) with gain 0.02.
RHM_INIT = nnx.initializers.variance_scaling(0.02**2, "fan_avg", "normal")

# The Rhythmic Head Motion discriminator's input: reference landmark map (1), reference image (3),
# target landmark map (1), real or generated image (3).
RHM_INPUT_CHANNELS = 8


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per-sample, per-channel normalisation over H, W in float32 (no affine, as pix2pix's default)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def avg_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """`nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)` on NHWC: border windows
    average only the cells inside the image, so edges are not darkened toward zero."""
    window, strides, pad = (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    x32 = x.astype(jnp.float32)
    total = jax.lax.reduce_window(x32, 0.0, jax.lax.add, window, strides, pad)
    count = jax.lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), jnp.float32), 0.0, jax.lax.add, window, strides, pad)
    return (total / count).astype(x.dtype)


class PatchGAN(nnx.Module):
    """`__call__(x) -> (logits (B, h, w, 1) float32, [features after each hidden conv])`."""

    def __init__(
        self, input_nc: int, *, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
        spectral_norm: bool = False, padding: int = 1, kernel_init: Callable = TORCH_CONV_INIT,
        dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs,
    ):
        if norm not in NORMS:
            raise ValueError(f"PatchGAN: norm must be one of {NORMS}, got {norm!r}")
        if n_layers < 1:
            raise ValueError(f"PatchGAN: n_layers must be >= 1, got {n_layers}")
        if padding not in (1, 2):
            raise ValueError(f"PatchGAN: padding must be 1 (pix2pix) or 2 (pix2pixHD), got {padding}")
        self.norm, self.dtype = norm, dtype
        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        strides = [2] * n_layers + [1]
        pad = ((padding, padding), (padding, padding))
        c_in, convs = input_nc, []
        for c_out, stride in zip(widths, strides):
            first = not convs
            # Bias where no norm follows (the first conv, or norm="none"), as pix2pix does.
            use_bias = norm == "none" or first
            if spectral_norm and not first:
                conv = SNConv(c_in, c_out, 4, strides=stride, padding=pad, use_bias=use_bias,
                              kernel_init=kernel_init, dtype=dtype, rngs=rngs)
            else:
                conv = nnx.Conv(c_in, c_out, (4, 4), strides=stride, padding=pad, use_bias=use_bias,
                                kernel_init=kernel_init, dtype=dtype, rngs=rngs)
            convs.append(conv)
            c_in = c_out
        self.convs = nnx.List(convs)
        self.head = nnx.Conv(c_in, 1, (4, 4), strides=1, padding=pad, kernel_init=kernel_init, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        x = x.astype(self.dtype)
        features = []
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i > 0 and self.norm == "instance":
                x = instance_norm(x)
            x = jax.nn.leaky_relu(x, 0.2)
            features.append(x)
        return self.head(x).astype(jnp.float32), features


class MultiscalePatchGAN(nnx.Module):
    """`num_d` PatchGANs (no shared weights) on successively 2x average-pooled inputs.

    `__call__(x) -> [(logits, features)]`, index 0 the full-resolution scale. Keyword arguments
    other than `num_d` go to every `PatchGAN`.
    """

    def __init__(self, input_nc: int, *, num_d: int = 2, rngs: nnx.Rngs, **patchgan_kwargs: Any):
        if num_d < 1:
            raise ValueError(f"MultiscalePatchGAN: num_d must be >= 1, got {num_d}")
        self.scales = nnx.List([PatchGAN(input_nc, rngs=rngs, **patchgan_kwargs) for _ in range(num_d)])

    def __call__(self, x: jax.Array) -> list[tuple[jax.Array, list[jax.Array]]]:
        outputs = []
        for i, d in enumerate(self.scales):
            if i > 0:
                x = avg_pool_3x3_s2(x)
            outputs.append(d(x))
        return outputs


def rhm_discriminator(*, num_d: int = 2, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs) -> MultiscalePatchGAN:
    """The Rhythmic Head Motion image discriminator: ndf 32, 4 stride-2 layers, 4x4 convs padded 2,
    spectral norm + instance norm on the hidden convs, xavier-normal(0.02) init, 8 input channels.

    `num_d=2` follows the paper (two discriminators at two input scales); the authors' code runs
    one (`num_d=1`). docs/rhm_training.md#discriminator.
    """
    return MultiscalePatchGAN(
        RHM_INPUT_CHANNELS, num_d=num_d, ndf=32, n_layers=4, norm="instance", spectral_norm=True, padding=2,
        kernel_init=RHM_INIT, dtype=dtype, rngs=rngs,
    )
