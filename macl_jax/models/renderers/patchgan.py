"""A PatchGAN discriminator (pix2pix `NLayerDiscriminator`), NHWC, returning its features.

4x4 convs with padding 1: `n_layers` stride-2 convs (ndf, 2 ndf, ... capped at 8 ndf), one
stride-1 conv, then a stride-1 conv to one logit per patch. LeakyReLU(0.2) after every conv but
the last; instance norm (or none) after every conv but the first and the last. Each activation is
returned for feature matching. Logits are float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.renderers.resunet import TORCH_CONV_INIT

NORMS = ("instance", "none")


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per-sample, per-channel normalisation over H, W in float32 (no affine, as pix2pix's default)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class PatchGAN(nnx.Module):
    """`__call__(x) -> (logits (B, h, w, 1) float32, [features after each hidden conv])`."""

    def __init__(
        self, input_nc: int, *, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
        dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs,
    ):
        if norm not in NORMS:
            raise ValueError(f"PatchGAN: norm must be one of {NORMS}, got {norm!r}")
        if n_layers < 1:
            raise ValueError(f"PatchGAN: n_layers must be >= 1, got {n_layers}")
        self.norm, self.dtype = norm, dtype
        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        strides = [2] * n_layers + [1]
        c_in, convs = input_nc, []
        for c_out, stride in zip(widths, strides):
            # Bias where no norm follows (the first conv, or norm="none"), as pix2pix does.
            use_bias = norm == "none" or not convs
            convs.append(nnx.Conv(c_in, c_out, (4, 4), strides=stride, padding=((1, 1), (1, 1)), use_bias=use_bias,
                                  kernel_init=TORCH_CONV_INIT, dtype=dtype, rngs=rngs))
            c_in = c_out
        self.convs = nnx.List(convs)
        self.head = nnx.Conv(c_in, 1, (4, 4), strides=1, padding=((1, 1), (1, 1)), kernel_init=TORCH_CONV_INIT,
                             dtype=dtype, rngs=rngs)

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
