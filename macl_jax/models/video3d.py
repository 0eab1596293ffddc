"""The SFE's visual side: the "resnet18_2d3d" backbone and the visual heads (docs/decisions.md#sfe-architecture).

Layout NDHWC: frames (B', T, H, W, 3). Convolutions run in `dtype`, batch norm in float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.speech import (
    Initializer,
    apply_batch_norm,
    batch_norm,
    check_dropout_rngs,
    kaiming_normal_fan_out,
    variance_scaling,
)

HEAD_POOLINGS = ("reference", "global")
# The reference head's unpadded 1x4x4 conv needs a 4x4 map after its stride-2 conv, i.e. a
# backbone map of 7 or 8, i.e. frames of 193-256 px (the backbone divides by 32, rounding up).
REFERENCE_FRAME_PX = (193, 256)

# PyTorch's default conv/linear init (kaiming_uniform with a = sqrt(5)) is U(+-1/sqrt(fan_in)).
torch_default_kernel_init: Initializer = variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int) -> Initializer:
    """PyTorch's default bias init U(+-1/sqrt(fan_in)), fan_in = in_channels * kernel volume."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv3d(nnx.Module):
    """A bias-free 3-D convolution (NDHWC, kernel (kt, kh, kw, in, out)) computed as 2-D convolutions.

    Each temporal tap is a 2-D convolution over frames folded into the batch, and the taps are
    summed. It is the same function as a 3-D convolution, but XLA's CPU backend runs 2-D
    convolutions several times faster (a 1x3x3 conv: 5x forward, 3x with its gradient; 3x3x3: 2-3x),
    and the 2d blocks of the network (kt = 1) become plain image convolutions. Padding is explicit
    (PyTorch's); the kernel init defaults to Kaiming-normal fan-out, as a batch norm follows each.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int],
        padding: tuple[int, int, int],
        *,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
        kernel_init: Initializer = kaiming_normal_fan_out,
    ):
        self.kernel = nnx.Param(kernel_init(rngs.params(), (*kernel, in_features, out_features), param_dtype))
        self.stride = tuple(int(v) for v in stride)
        self.padding = tuple(int(v) for v in padding)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...].astype(self.dtype)
        x = x.astype(self.dtype)
        st, sh, sw = self.stride
        pt, ph, pw = self.padding
        kt = kernel.shape[0]
        if pt:
            x = jnp.pad(x, ((0, 0), (pt, pt), (0, 0), (0, 0), (0, 0)))
        batch, frames = x.shape[:2]
        out_frames = (frames - kt) // st + 1
        if out_frames < 1:
            raise ValueError(f"Conv3d: {frames} (padded) frames are fewer than the temporal kernel {kt}")
        total = None
        for tap in range(kt):
            # Frames tap, tap + st, ... feed output frames 0, 1, ...
            taken = x[:, tap : tap + st * (out_frames - 1) + 1 : st]
            y = jax.lax.conv_general_dilated(
                taken.reshape(batch * out_frames, *taken.shape[2:]),
                kernel[tap],
                window_strides=(sh, sw),
                padding=((ph, ph), (pw, pw)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            total = y if total is None else total + y
        return total.reshape(batch, out_frames, *total.shape[1:])


class BasicBlock(nnx.Module):
    """A ResNet BasicBlock; "2d" blocks use 1x3x3 kernels and stride (1,s,s), "3d" blocks 3x3x3 and (s,s,s)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        stride: int = 1,
        *,
        temporal: bool,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        kernel = (3, 3, 3) if temporal else (1, 3, 3)
        pad = (1, 1, 1) if temporal else (0, 1, 1)
        strides = (stride, stride, stride) if temporal else (1, stride, stride)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = Conv3d(in_features, out_features, kernel, strides, pad, **kw)
        self.bn1 = batch_norm(out_features, rngs=rngs, param_dtype=param_dtype)
        self.conv2 = Conv3d(out_features, out_features, kernel, (1, 1, 1), pad, **kw)
        self.bn2 = batch_norm(out_features, rngs=rngs, param_dtype=param_dtype)
        if stride != 1 or in_features != out_features:
            self.proj = Conv3d(in_features, out_features, (1, 1, 1), strides, (0, 0, 0), **kw)
            self.proj_bn = batch_norm(out_features, rngs=rngs, param_dtype=param_dtype)
        else:
            self.proj = None
            self.proj_bn = None

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = jax.nn.relu(apply_batch_norm(self.bn1, self.conv1(x), train=train))
        y = apply_batch_norm(self.bn2, self.conv2(y), train=train)
        shortcut = x if self.proj is None else apply_batch_norm(self.proj_bn, self.proj(x), train=train)
        return jax.nn.relu(y + shortcut)


class ResNet2d3d(nnx.Module):
    """3-D ResNet-18 "resnet18_2d3d": stem, max-pool, 2d layers 1-2, 3d layers 3-4 (docs/decisions.md#sfe-architecture).

    (B', 5, 256, 256, 3) -> (B', 2, 8, 8, widths[-1]).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 256),
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(
                f"ResNet2d3d widths must be 4 positive stage widths (reference 64,128,256,256), got {widths}"
            )
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.stem = Conv3d(3, widths[0], (1, 7, 7), (1, 2, 2), (0, 3, 3), **kw)
        self.stem_bn = batch_norm(widths[0], rngs=rngs, param_dtype=param_dtype)
        ins = (widths[0],) + widths[:-1]
        strides = (1, 2, 2, 2)
        temporal = (False, False, True, True)
        self.layers = nnx.List(
            [
                nnx.List(
                    [
                        BasicBlock(c_in, c_out, s, temporal=t, **kw),
                        BasicBlock(c_out, c_out, 1, temporal=t, **kw),
                    ]
                )
                for c_in, c_out, s, t in zip(ins, widths, strides, temporal)
            ]
        )
        self.out_features = widths[-1]
        self.dtype = dtype

    def feature_maps(self, frames: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        """Every stage's output: stem, pool, layer1..layer4, each (B', T', H', W', C)."""
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"ResNet2d3d expects RGB frame stacks (batch, time, height, width, 3), got {frames.shape}")
        x = frames.astype(self.dtype)
        maps = {}
        x = jax.nn.relu(apply_batch_norm(self.stem_bn, self.stem(x), train=train))
        maps["stem"] = x
        # Padding with -inf, like PyTorch's MaxPool3d. The init value must be a Python scalar:
        # as an array, JAX cannot see the max monoid and the pool has no gradient.
        x = jax.lax.reduce_window(
            x,
            -jnp.inf,
            jax.lax.max,
            window_dimensions=(1, 1, 3, 3, 1),
            window_strides=(1, 1, 2, 2, 1),
            padding=((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)),
        )
        maps["pool"] = x
        for i, layer in enumerate(self.layers):
            for block in layer:
                x = block(x, train=train)
            maps[f"layer{i + 1}"] = x
        return maps

    def __call__(self, frames: jax.Array, *, train: bool) -> jax.Array:
        return self.feature_maps(frames, train=train)["layer4"]


class VisualHead(nnx.Module):
    """A visual feature head (docs/decisions.md#sfe-architecture): (B', T', H', W', C) -> (B', out_features) float32.

    pooling="reference": conv 1x3x3 s(1,2,2) -> BN -> ReLU -> Dropout -> conv 1x4x4 VALID -> mean over T;
    defined only for 193-256 px frames (a 7x7 or 8x8 backbone map). pooling="global": the same first
    conv/BN/ReLU/Dropout, then a mean over T, H, W and a Linear, for any frame size (CPU presets).
    The convs and the Linear keep PyTorch's default init (the reference init loop does not reach them).
    """

    def __init__(
        self,
        in_features: int = 256,
        hidden: int = 128,
        out_features: int = 128,
        *,
        pooling: str = "reference",
        dropout: float = 0.5,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if pooling not in HEAD_POOLINGS:
            raise ValueError(f"VisualHead pooling must be one of {HEAD_POOLINGS}, got {pooling!r}")
        kw = dict(dtype=dtype, param_dtype=param_dtype, kernel_init=torch_default_kernel_init, rngs=rngs)
        self.conv = nnx.Conv(
            in_features,
            hidden,
            kernel_size=(1, 3, 3),
            strides=(1, 2, 2),
            padding=((0, 0), (1, 1), (1, 1)),
            bias_init=torch_default_bias_init(in_features * 9),
            **kw,
        )
        self.norm = batch_norm(hidden, rngs=rngs, param_dtype=param_dtype)
        self.drop = nnx.Dropout(dropout)
        if pooling == "reference":
            self.out = nnx.Conv(
                hidden,
                out_features,
                kernel_size=(1, 4, 4),
                padding="VALID",
                bias_init=torch_default_bias_init(hidden * 16),
                **kw,
            )
        else:
            self.out = nnx.Linear(hidden, out_features, bias_init=torch_default_bias_init(hidden), **kw)
        self.pooling = pooling
        self.dropout_rate = dropout

    def __call__(self, features: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> jax.Array:
        if features.ndim != 5:
            raise ValueError(
                f"VisualHead expects backbone maps (batch, time, height, width, channels), got {features.shape}"
            )
        if self.pooling == "reference" and (features.shape[2] not in (7, 8) or features.shape[3] not in (7, 8)):
            raise ValueError(
                f"VisualHead(pooling='reference') needs a 7x7 or 8x8 backbone map, i.e. frames of "
                f"{REFERENCE_FRAME_PX[0]}-{REFERENCE_FRAME_PX[1]} px (the reference uses 256); got a "
                f"{features.shape[2]}x{features.shape[3]} map. Use pooling='global' for other frame sizes"
            )
        check_dropout_rngs(self.dropout_rate, train, rngs, type(self).__name__)
        y = jax.nn.relu(apply_batch_norm(self.norm, self.conv(features), train=train))
        y = self.drop(y, deterministic=not train, rngs=rngs)
        if self.pooling == "reference":
            y = self.out(y)  # (B', T', 1, 1, out)
            y = jnp.mean(y.astype(jnp.float32), axis=(1, 2, 3))
        else:
            y = self.out(jnp.mean(y.astype(jnp.float32), axis=(1, 2, 3)).astype(y.dtype))
        return y.astype(jnp.float32)
