"""The speech branch shared by the SFE and the MDN (docs/decisions.md#sfe-architecture,
docs/decisions.md#d1-mdn-speech-branch).

audio windows (B, S, 20, 80) -> WavEncoder per step -> (B, S, F) -> Bi-GRU -> (B, S, 2H)
-> two addressing heads -> softmax over k slots -> read-outs of the content / identity banks.

Layouts are NHWC. Parameters are float32; matmuls and convolutions run in `dtype`; batch
norm, the addressing softmax and the memory read-outs run in float32 because they feed the
contrastive losses.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.norm import TorchBatchNorm

Initializer = Callable[..., jax.Array]



def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """`jax.nn.initializers.variance_scaling` for (..., in, out) kernels, with the same values.

    It draws a flat vector and reshapes it (threefry gives identical numbers either way) because
    XLA:CPU compiles multi-dimensional random fusions several times slower, and model init
    compiles one per kernel.
    """
    if mode not in ("fan_in", "fan_out", "fan_avg") or distribution not in ("normal", "uniform"):
        raise ValueError(f"unsupported variance_scaling mode/distribution {mode!r}/{distribution!r}")

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        shape = tuple(shape)
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in = (shape[-2] if len(shape) > 1 else 1) * receptive
        fan_out = shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / fan
        size = math.prod(shape)
        if distribution == "normal":
            flat = jax.random.normal(key, (size,), dtype) * jnp.sqrt(variance).astype(dtype)
        else:
            flat = jax.random.uniform(key, (size,), dtype, -1.0) * jnp.sqrt(3 * variance).astype(dtype)
        return flat.reshape(shape)

    return init


def standard_normal(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """N(0, 1), drawn flat for compile speed (see `variance_scaling`)."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(tuple(shape))


# PyTorch `kaiming_normal_(mode="fan_out")` is an *untruncated* normal with std sqrt(2 / fan_out);
# the fan_out of a (..., in, out) kernel is out * receptive field, as in PyTorch.
kaiming_normal_fan_out: Initializer = variance_scaling(2.0, "fan_out", "normal")
# PyTorch `xavier_normal_` (gain 1) is untruncated; Flax's glorot_normal is truncated.
xavier_normal: Initializer = variance_scaling(1.0, "fan_avg", "normal")

MEMORY_VARIANTS = ("cs", "w", "wo")
MEL_WINDOW = (20, 80)


@dataclasses.dataclass(frozen=True)
class SpeechSizes:
    """Widths of the speech branch. The SFE and the MDN both hold one, so an SFE checkpoint fits an
    MDN of the same speech sizes (docs/decisions.md#d1-mdn-speech-branch); the defaults are the
    reference's, `tiny()` a CPU-sized branch."""

    encoder_channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    gru_hidden: int = 512
    slots: int = 512
    slot_dim: int = 128
    head_hidden: int = 128

    def __post_init__(self):
        # A tuple, so that sizes read from a config (lists) stay hashable for jit static arguments.
        object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        if len(self.encoder_channels) != 5 or min(self.encoder_channels) < 1:
            raise ValueError(
                f"encoder_channels must be 5 positive widths, one per WavEncoder stage (reference: 16,32,64,128,256), "
                f"got {self.encoder_channels}"
            )

    @classmethod
    def tiny(cls) -> "SpeechSizes":
        return cls(encoder_channels=(8, 16, 32, 64, 128), gru_hidden=64, slots=64, slot_dim=32, head_hidden=64)

    @classmethod
    def from_config(cls, model: Mapping[str, Any]) -> "SpeechSizes":
        """The speech sizes of a config's `model` section (the SFE's and the MDN's name them alike)."""
        return cls(**{field.name: model[field.name] for field in dataclasses.fields(cls)})


class MemorySlots(nnx.Param):
    """A memory bank's slots. A separate type so optimizer masks (e.g. no weight decay) can find them."""


def batch_norm(num_features: int, *, rngs: nnx.Rngs, param_dtype: jnp.dtype = jnp.float32) -> TorchBatchNorm:
    """PyTorch-default batch norm (eps 1e-5, running-stat momentum 0.1 = Flax 0.9, unbiased running
    variance: `macl_jax.models.norm`), computed in float32."""
    return TorchBatchNorm(
        num_features, momentum=0.9, epsilon=1e-5, dtype=jnp.float32, param_dtype=param_dtype, rngs=rngs
    )


def apply_batch_norm(norm: nnx.BatchNorm, x: jax.Array, *, train: bool) -> jax.Array:
    """Normalises in float32 (bf16 statistics are too coarse) and returns the input's dtype."""
    return norm(x.astype(jnp.float32), use_running_average=not train).astype(x.dtype)


def check_dropout_rngs(rate: float, train: bool, rngs: nnx.Rngs | None, where: str) -> None:
    if train and rate > 0 and rngs is None:
        raise ValueError(
            f"{where}: train=True with dropout {rate} needs `rngs` holding a 'dropout' stream, "
            "e.g. rngs=nnx.Rngs(dropout=key); pass train=False for evaluation"
        )


class _ConvUnit(nnx.Module):
    """conv2d (with bias) -> BN -> [+ input] -> LeakyReLU(0.2)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        *,
        residual: bool,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        if residual and (in_features != out_features or stride != (1, 1)):
            raise ValueError("a residual unit keeps its shape: same channels and stride 1")
        self.conv = nnx.Conv(
            in_features,
            out_features,
            kernel_size=kernel,
            strides=stride,
            padding=tuple((p, p) for p in padding),
            kernel_init=kaiming_normal_fan_out,
            bias_init=jax.nn.initializers.zeros,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.norm = batch_norm(out_features, rngs=rngs, param_dtype=param_dtype)
        self.residual = residual

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = apply_batch_norm(self.norm, self.conv(x), train=train)
        if self.residual:
            y = y + x
        return jax.nn.leaky_relu(y, 0.2)


class WavEncoder(nnx.Module):
    """The 9 conv units of the reference `WavEncoder` (docs/decisions.md#sfe-architecture): a (20, 80)
    mel window -> one `channels[-1]`-d vector. `channels` are the five stage widths
    (`SpeechSizes.encoder_channels`, checked there)."""

    def __init__(
        self,
        channels: Sequence[int] = SpeechSizes.encoder_channels,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        c1, c2, c3, c4, c5 = channels
        # (in, out, kernel, stride, padding, residual); spatial sizes 20x80 -> 10x20 -> 5x10 -> 3x5 -> 1x1.
        spec = [
            (1, c1, (3, 3), (1, 1), (1, 1), False),
            (c1, c1, (3, 3), (1, 1), (1, 1), True),
            (c1, c2, (3, 3), (2, 4), (1, 1), False),
            (c2, c2, (3, 3), (1, 1), (1, 1), True),
            (c2, c3, (3, 3), (2, 2), (1, 1), False),
            (c3, c3, (3, 3), (1, 1), (1, 1), True),
            (c3, c4, (3, 3), (2, 2), (1, 1), False),
            (c4, c4, (3, 3), (1, 1), (1, 1), True),
            (c4, c5, (3, 5), (1, 1), (0, 0), False),
        ]
        self.units = nnx.List(
            [
                _ConvUnit(i, o, k, s, p, residual=r, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for i, o, k, s, p, r in spec
            ]
        )
        self.out_features = c5
        self.dtype = dtype

    def feature_maps(self, windows: jax.Array, *, train: bool) -> list[jax.Array]:
        """The output of every unit, (N, H, W, C) each."""
        if windows.ndim == 3:
            windows = windows[..., None]
        if windows.ndim != 4 or windows.shape[1:] != (*MEL_WINDOW, 1):
            raise ValueError(
                f"WavEncoder expects mel windows of shape (N, 20, 80) or (N, 20, 80, 1) (docs/decisions.md#audio-features), "
                f"got {windows.shape}"
            )
        x = windows.astype(self.dtype)
        maps = []
        for unit in self.units:
            x = unit(x, train=train)
            maps.append(x)
        return maps

    def __call__(self, windows: jax.Array, *, train: bool) -> jax.Array:
        """(N, 20, 80[, 1]) -> (N, channels[-1])."""
        x = self.feature_maps(windows, train=train)[-1]
        return x.reshape(x.shape[0], self.out_features)


class BiGRU(nnx.Module):
    """One bidirectional GRU layer, h0 = 0, batch-first: (B, S, F) -> (B, S, 2*hidden) = [forward | backward].

    Gates follow PyTorch (order r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))). Kernels are
    stored as (2 directions, in, 3*hidden); `kernel_init` is applied to each direction's full
    (in, 3*hidden) matrix, so fan-based inits see PyTorch's fans. With `pytorch_biases` both b_ih
    and b_hh exist (parameter parity with PyTorch); otherwise the r/z biases are merged as in Flax's
    GRUCell (same function, 2*hidden fewer biases per direction).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
        kernel_init: Initializer = xavier_normal,
        recurrent_init: Initializer | None = None,
        pytorch_biases: bool = True,
    ):
        recurrent_init = kernel_init if recurrent_init is None else recurrent_init

        def per_direction(init: Initializer, shape: tuple[int, int]) -> jax.Array:
            # One vmapped draw for both directions: each random op costs XLA:CPU compile time.
            keys = jax.random.split(rngs.params(), 2)
            return jax.vmap(lambda key: init(key, shape, param_dtype))(keys)

        self.w_ih = nnx.Param(per_direction(kernel_init, (in_features, 3 * hidden)))
        self.w_hh = nnx.Param(per_direction(recurrent_init, (hidden, 3 * hidden)))
        self.b_ih = nnx.Param(jnp.zeros((2, 3 * hidden), param_dtype))
        # Only b_hn sits inside r * (.), so it is the only hidden bias that is not redundant.
        self.b_hh = nnx.Param(jnp.zeros((2, 3 * hidden if pytorch_biases else hidden), param_dtype))
        self.hidden = hidden
        self.in_features = in_features
        self.pytorch_biases = pytorch_biases
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"BiGRU expects (batch, steps, {self.in_features}), got {x.shape}")
        H = self.hidden
        b_ih = self.b_ih[...].astype(jnp.float32)
        b_hh = self.b_hh[...].astype(jnp.float32)
        if not self.pytorch_biases:
            b_hh = jnp.concatenate([jnp.zeros((2, 2 * H), jnp.float32), b_hh], axis=-1)
        w_ih = self.w_ih[...].astype(self.dtype)
        w_hh = self.w_hh[...].astype(self.dtype)
        # Input projections of all steps at once (one large matmul), the backward direction on
        # the time-reversed sequence; then one scan carries both directions' states.
        xs = jnp.stack([x, jnp.flip(x, axis=1)]).astype(self.dtype)  # (2, B, S, F)
        # (No preferred_element_type=f32: XLA:CPU has no bf16 x bf16 -> f32 dot.)
        gi = jnp.einsum("dbsf,dfk->sdbk", xs, w_ih).astype(jnp.float32) + b_ih[:, None]

        def step(h: jax.Array, gi_t: jax.Array) -> tuple[jax.Array, jax.Array]:
            # The state stays float32: rounding errors would otherwise compound over the sequence.
            gh = jnp.einsum("dbh,dhk->dbk", h.astype(self.dtype), w_hh).astype(jnp.float32)
            gh = gh + b_hh[:, None]
            r = jax.nn.sigmoid(gi_t[..., :H] + gh[..., :H])
            z = jax.nn.sigmoid(gi_t[..., H : 2 * H] + gh[..., H : 2 * H])
            n = jnp.tanh(gi_t[..., 2 * H :] + r * gh[..., 2 * H :])
            h = (1.0 - z) * n + z * h
            return h, h

        h0 = jnp.zeros((2, x.shape[0], H), jnp.float32)
        _, hs = jax.lax.scan(step, h0, gi)  # (S, 2, B, H)
        forward = hs[:, 0]
        backward = jnp.flip(hs[:, 1], axis=0)
        return jnp.concatenate([forward, backward], axis=-1).transpose(1, 0, 2).astype(self.dtype)


class AddressingHead(nnx.Module):
    """Linear -> ReLU -> Dropout -> Linear; the SFE's phi_c / phi_s (and the "wo" projections)."""

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        dropout: float = 0.5,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        kernel_init: Initializer = kaiming_normal_fan_out,
        bias_init: Initializer = jax.nn.initializers.zeros,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.hidden = nnx.Linear(in_features, hidden, **kw)
        self.drop = nnx.Dropout(dropout)
        self.out = nnx.Linear(hidden, out_features, **kw)
        self.dropout_rate = dropout

    def __call__(self, h: jax.Array, *, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        """Returns float32 outputs."""
        check_dropout_rngs(self.dropout_rate, train, rngs, type(self).__name__)
        y = jax.nn.relu(self.hidden(h))
        y = self.drop(y, deterministic=not train, rngs=rngs)
        return self.out(y).astype(jnp.float32)


def read_memory(address: jax.Array, slots: jax.Array) -> jax.Array:
    """Eq. (2): the address-weighted sum of the slots, (..., k) @ (k, C) -> (..., C), in float32."""
    return jnp.einsum(
        "...k,kc->...c", address.astype(jnp.float32), slots.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST
    )


class MemoryBank(nnx.Module):
    """k learnable slots of C dims (N(0, 1) init, trained by backprop only) and their addressing head.

    Eq. (1)-(2): address = softmax(head(h)) over the k slots, read-out = address @ slots.
    """

    def __init__(
        self,
        in_features: int,
        slots: int,
        slot_dim: int,
        head_hidden: int = 128,
        dropout: float = 0.5,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        head_kernel_init: Initializer = kaiming_normal_fan_out,
        rngs: nnx.Rngs,
    ):
        self.head = AddressingHead(
            in_features,
            head_hidden,
            slots,
            dropout,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=head_kernel_init,
            rngs=rngs,
        )
        self.slots = MemorySlots(standard_normal(rngs.params(), (slots, slot_dim), param_dtype))

    def address(self, h: jax.Array, *, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        """(..., in) -> (..., k) float32 rows on the probability simplex."""
        return jax.nn.softmax(self.head(h, train=train, rngs=rngs), axis=-1)

    def __call__(self, h: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> tuple[jax.Array, jax.Array]:
        """(..., in) -> (read-out (..., C), address (..., k)), both float32."""
        address = self.address(h, train=train, rngs=rngs)
        return read_memory(address, self.slots[...]), address


class SpeechBranch(nnx.Module):
    """WavEncoder -> BiGRU -> content and identity features (docs/decisions.md#sfe-architecture, MACL paper Table 3 variants).

    memory="cs": separate content and identity banks (the paper's model); "w": ONE bank read by two
    addressing heads; "wo": no memory, the features are MLP projections of the GRU output with the
    addressing heads' hidden size, so the three variants differ only by the memory.
    """

    def __init__(
        self,
        sizes: SpeechSizes = SpeechSizes(),
        *,
        memory: str = "cs",
        dropout: float = 0.5,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        gru_kernel_init: Initializer = xavier_normal,
        rngs: nnx.Rngs,
    ):
        if memory not in MEMORY_VARIANTS:
            raise ValueError(
                f"memory must be one of {MEMORY_VARIANTS} (cs = two banks, w = one bank, wo = none), got {memory!r}"
            )
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.encoder = WavEncoder(sizes.encoder_channels, **kw)
        self.gru = BiGRU(self.encoder.out_features, sizes.gru_hidden, kernel_init=gru_kernel_init, **kw)
        features = 2 * sizes.gru_hidden
        slots, slot_dim, head_hidden = sizes.slots, sizes.slot_dim, sizes.head_hidden
        self.memory = memory
        if memory == "wo":
            self.content_proj = AddressingHead(features, head_hidden, slot_dim, dropout, **kw)
            self.identity_proj = AddressingHead(features, head_hidden, slot_dim, dropout, **kw)
        else:
            self.content_memory = MemoryBank(features, slots, slot_dim, head_hidden, dropout, **kw)
            if memory == "cs":
                self.identity_memory = MemoryBank(features, slots, slot_dim, head_hidden, dropout, **kw)
            else:  # "w": a second head addresses the content bank's slots
                self.identity_head = AddressingHead(features, head_hidden, slots, dropout, **kw)

    def __call__(self, audio: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        """audio (B, S, 20, 80) -> {"content", "identity": (B, S, C) f32; "gru": (B, S, 2H);
        "content_address", "identity_address": (B, S, k) f32 unless memory == "wo"}."""
        if audio.ndim != 4 or audio.shape[2:] != MEL_WINDOW:
            raise ValueError(f"SpeechBranch expects audio windows (batch, steps, 20, 80), got {audio.shape}")
        B, S = audio.shape[:2]
        emb = self.encoder(audio.reshape(B * S, *MEL_WINDOW), train=train).reshape(B, S, -1)
        h = self.gru(emb)
        out: dict[str, jax.Array] = {"gru": h}
        if self.memory == "wo":
            out["content"] = self.content_proj(h, train=train, rngs=rngs)
            out["identity"] = self.identity_proj(h, train=train, rngs=rngs)
        elif self.memory == "cs":
            out["content"], out["content_address"] = self.content_memory(h, train=train, rngs=rngs)
            out["identity"], out["identity_address"] = self.identity_memory(h, train=train, rngs=rngs)
        else:
            out["content"], out["content_address"] = self.content_memory(h, train=train, rngs=rngs)
            address = jax.nn.softmax(self.identity_head(h, train=train, rngs=rngs), axis=-1)
            out["identity"] = read_memory(address, self.content_memory.slots[...])
            out["identity_address"] = address
        return out
