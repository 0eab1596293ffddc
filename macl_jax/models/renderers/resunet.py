"""MakeItTalk's image-to-image generator `ResUnetGenerator` (docs/decisions.md#renderer-architecture), NHWC.

A U-Net of `num_downs` levels. Level i (outer -> inner) goes down with a stride-2 3x3 conv
(BatchNorm except at the outermost and innermost levels), ReLU and two residual blocks; comes back
with nearest x2 upsampling, a 3x3 conv, BatchNorm, ReLU and two residual blocks; every level but
the outermost returns concat(input, output) as the skip. The outermost up-conv has no norm and no
activation; `__call__` applies the tanh the reference training script applied (docs/decisions.md#renderer-value-range: output in
[-1, 1]). All convs are bias-free (bias only pairs with InstanceNorm in the reference).

`num_downs=6, ngf=64` at 256 px is the reference: 69,860,736 parameters, a 4x4x512 bottleneck.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.norm import TorchBatchNorm

# "signed_rgb": images in and out are RGB in [-1, 1] (docs/decisions.md#renderer-value-range).
# "makeittalk": the network itself sees and makes BGR images in [0, 1], as MakeItTalk's released
# weights were trained (docs/checkpoint_import.md#makeittalk-renderer); the interface stays signed RGB.
IO_CONVENTIONS = ("signed_rgb", "makeittalk")

# PyTorch's default conv init (kaiming_uniform with a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_CONV_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _conv(c_in: int, c_out: int, stride: int, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    # Explicit pad 1 (not "SAME"): identical for even sizes, and what the reference uses for odd ones.
    return nnx.Conv(
        c_in, c_out, (3, 3), strides=stride, padding=((1, 1), (1, 1)), use_bias=False,
        kernel_init=TORCH_CONV_INIT, dtype=dtype, rngs=rngs,
    )


def _norm(c: int, rngs: nnx.Rngs) -> TorchBatchNorm:
    # PyTorch BatchNorm2d: eps 1e-5, running-average momentum 0.1 (= Flax momentum 0.9), unbiased running variance.
    return TorchBatchNorm(c, momentum=0.9, epsilon=1e-5, dtype=jnp.float32, rngs=rngs)


def _bn(norm: nnx.BatchNorm, x: jax.Array, train: bool) -> jax.Array:
    # Statistics in float32 whatever the compute dtype (house rule for normalisations).
    return norm(x.astype(jnp.float32), use_running_average=not train).astype(x.dtype)


def upsample_nearest2x(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, 2H, 2W, C), each pixel repeated 2x2 (PyTorch `Upsample(mode='nearest')`)."""
    b, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """conv3x3(pad 1) of the nearest-x2 upsampled `x`, without building the upsampled image.

    Each of the four output phases (row parity a, column parity b) sees only two source rows and
    two source columns, so it is a 2x2 conv of `x` with the 3x3 taps summed onto them: 16 instead
    of 36 multiply-adds per output pixel and channel pair, the same function (up to float
    summation order). x (B, H, W, Cin), kernel (3, 3, Cin, Cout) HWIO -> (B, 2H, 2W, Cout).
    """
    k = kernel.astype(x.dtype)
    # Phase 0 reads source offsets (-1, 0) with taps (k0, k1 + k2); phase 1 reads (0, +1) with (k0 + k1, k2).
    rows = (jnp.stack([k[0], k[1] + k[2]]), jnp.stack([k[0] + k[1], k[2]]))
    b, h, w, _ = x.shape
    out_rows = []
    for a in (0, 1):
        phases = []
        for c in (0, 1):
            kr = rows[a]
            taps = jnp.stack([kr[:, 0], kr[:, 1] + kr[:, 2]], 1) if c == 0 else jnp.stack([kr[:, 0] + kr[:, 1], kr[:, 2]], 1)
            phases.append(jax.lax.conv_general_dilated(
                x, taps, (1, 1), ((1 - a, a), (1 - c, c)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            ))
        # (B, H, W, 2, C) -> (B, H, 2W, C): interleaves the column phases without a transpose.
        out_rows.append(jnp.stack(phases, axis=3).reshape(b, h, 2 * w, -1))
    return jnp.stack(out_rows, axis=2).reshape(b, 2 * h, 2 * w, -1)


class ResidualBlock(nnx.Module):
    """relu(x + BN(conv(relu(BN(conv(x))))))."""

    def __init__(self, c: int, *, dtype, rngs: nnx.Rngs):
        self.conv1 = _conv(c, c, 1, dtype, rngs)
        self.norm1 = _norm(c, rngs)
        self.conv2 = _conv(c, c, 1, dtype, rngs)
        self.norm2 = _norm(c, rngs)

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = jax.nn.relu(_bn(self.norm1, self.conv1(x), train))
        y = _bn(self.norm2, self.conv2(y), train)
        return jax.nn.relu(x + y)


class UnetLevel(nnx.Module):
    """One ResUnetSkipConnectionBlock; `inner` is the next level down (None at the innermost)."""

    def __init__(
        self, outer_nc: int, inner_nc: int, input_nc: int, inner: "UnetLevel | None", *,
        outermost: bool, dtype, rngs: nnx.Rngs,
    ):
        innermost = inner is None
        self.outermost, self.innermost = outermost, innermost
        self.down = _conv(input_nc, inner_nc, 2, dtype, rngs)
        self.down_norm = _norm(inner_nc, rngs) if not (outermost or innermost) else None
        self.down_res = nnx.List([ResidualBlock(inner_nc, dtype=dtype, rngs=rngs) for _ in range(2)])
        self.inner = inner
        # The inner level returns concat(its input, its output): twice inner_nc channels.
        self.up = _conv(inner_nc if innermost else 2 * inner_nc, outer_nc, 1, dtype, rngs)
        if outermost:
            self.up_norm, self.up_res = None, nnx.List([])
        else:
            self.up_norm = _norm(outer_nc, rngs)
            self.up_res = nnx.List([ResidualBlock(outer_nc, dtype=dtype, rngs=rngs) for _ in range(2)])

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = self.down(x)
        if self.down_norm is not None:
            y = _bn(self.down_norm, y, train)
        y = jax.nn.relu(y)
        for block in self.down_res:
            y = block(y, train)
        if self.inner is not None:
            y = self.inner(y, train)
        # Same parameters as conv(upsample(y)) (checkpoints do not change), 2.25x fewer FLOPs.
        y = upsample_conv3x3(y, self.up.kernel[...])
        if self.outermost:
            return y
        y = jax.nn.relu(_bn(self.up_norm, y, train))
        for block in self.up_res:
            y = block(y, train)
        return jnp.concatenate([x, y], axis=-1)


class ResUnetGenerator(nnx.Module):
    """(B, H, W, input_nc) -> tanh output (B, H, W, output_nc) in [-1, 1].

    H and W must be divisible by 2**num_downs. Channels at level i are ngf * min(2**i, 8) (the
    pix2pix U-Net schedule: 64, 128, 256, 512, 512, ... for ngf 64). Input: concat(raster,
    reference) in [-1, 1]. Compute in `dtype`, parameters and BatchNorm in float32.
    """

    def __init__(
        self, input_nc: int = 6, output_nc: int = 3, *, num_downs: int = 6, ngf: int = 64, io: str = "signed_rgb",
        dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs,
    ):
        if num_downs < 2:
            raise ValueError(f"ResUnetGenerator: num_downs must be >= 2, got {num_downs}")
        if io not in IO_CONVENTIONS:
            raise ValueError(f"ResUnetGenerator: io={io!r}; choose one of {IO_CONVENTIONS}")
        if io == "makeittalk" and (input_nc % 3 or output_nc != 3):
            raise ValueError("ResUnetGenerator: io='makeittalk' needs 3-channel images in and out")
        self.num_downs, self.input_nc, self.output_nc, self.io, self.dtype = num_downs, input_nc, output_nc, io, dtype
        width = [ngf * min(2**i, 8) for i in range(num_downs)]
        level = None
        for i in reversed(range(num_downs)):
            outer = output_nc if i == 0 else width[i - 1]
            level = UnetLevel(
                outer, width[i], input_nc if i == 0 else outer, level, outermost=i == 0, dtype=dtype, rngs=rngs
            )
        self.net = level

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        del rngs  # no dropout (the reference runs use_dropout=False)
        factor = 2**self.num_downs
        if x.ndim != 4 or x.shape[-1] != self.input_nc or x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"ResUnetGenerator: input must be (B, H, W, {self.input_nc}) with H and W divisible by "
                f"2**num_downs = {factor}, got {x.shape}"
            )
        if self.io == "makeittalk":  # RGB in [-1, 1] -> each image BGR in [0, 1]
            x = (x[..., _bgr_order(self.input_nc)] + 1) / 2
        y = jnp.tanh(self.net(x.astype(self.dtype), train).astype(jnp.float32))
        if self.io == "makeittalk":  # BGR meant as [0, 1] -> RGB in [-1, 1] (below 0 is clipped on display)
            y = 2 * y[..., ::-1] - 1
        return y


def _bgr_order(channels: int) -> list[int]:
    """Channel indices reversing the colour order of each consecutive 3-channel image."""
    return [3 * (c // 3) + 2 - c % 3 for c in range(channels)]


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (BatchNorm running statistics excluded, as in docs/decisions.md#parameter-counts)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
