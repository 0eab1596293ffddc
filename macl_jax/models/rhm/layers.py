"""Building blocks of the Rhythmic Head Motion image generator (NHWC): conv blocks, SPADE, SPADE
residual blocks, and 1x1 convolutions whose weights are generated per sample.

Batch norm. Every normalisation here is a `TorchBatchNorm` in float32 (eps 1e-5, running
averages with PyTorch's momentum 0.1 and its unbiased running variance, `macl_jax.models.norm`). The reference trains with synchronised batch norm; under
`jax.jit` over a global, sharded batch the mean and variance are already reductions over the
whole global batch (XLA inserts the cross-device sums), so no `axis_name` is needed: this *is*
SyncBatchNorm. Train/eval is the module attribute `use_running_average`, switched for the whole
model by `model.train()` / `model.eval()`, the same switch the spectral-norm layers read
(docs/rhm_generator.md#sync-batch-norm).

Init (the reference's): conv and linear kernels xavier-normal with gain 0.02, biases 0, batch-norm
scales N(1, 0.02). Spectral norm makes the gain irrelevant for the layers that carry it; it matters
for the plain convs (label embedders, flow heads, output conv), which start close to zero
(docs/rhm_generator.md#init).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.norm import TorchBatchNorm
from macl_jax.models.spectral import SNConv, SNLinear

__all__ = [
    "XAVIER_002", "Affine1x1", "SPADEAffine", "BlockAffines", "lrelu", "batch_norm", "apply_bn",
    "conv3x3", "sn_conv", "resize_to", "conv1x1_per_sample", "conv_transpose1x1_s2_per_sample",
    "ConvTranspose3x3s2", "SPADEConv2d", "BNResBlock", "SPADE", "SPADEResBlock", "SPADEResBlockConcat",
    "LinearStack",
]

# PyTorch's xavier_normal_(gain=0.02): std = gain * sqrt(2 / (fan_in + fan_out)), receptive field
# included, untruncated (flax's own xavier_normal is truncated).
XAVIER_002 = nnx.initializers.variance_scaling(0.02**2, "fan_avg", "normal")


def _bn_scale_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


class Affine1x1(NamedTuple):
    """A per-sample 1x1 conv: w (B, C_in, C_out), b (B, C_out)."""

    w: jax.Array
    b: jax.Array


class SPADEAffine(NamedTuple):
    """Generated weights of one SPADE's gamma and beta 1x1 convs (its first branch)."""

    gamma: Affine1x1
    beta: Affine1x1


class BlockAffines(NamedTuple):
    """Generated SPADE weights of one decoder block: its two norms and the shortcut's (None if no shortcut)."""

    norm_0: SPADEAffine
    norm_1: SPADEAffine
    norm_s: SPADEAffine | None


def lrelu(x: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x, 0.2)


def batch_norm(c: int, *, affine: bool, rngs: nnx.Rngs) -> TorchBatchNorm:
    """Float32 batch norm with PyTorch's eps, momentum and running-variance update; `affine=False`
    is SPADE's parameter-free norm."""
    return TorchBatchNorm(
        c, momentum=0.9, epsilon=1e-5, use_scale=affine, use_bias=affine, scale_init=_bn_scale_init,
        dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs,
    )


def apply_bn(norm: nnx.BatchNorm, x: jax.Array) -> jax.Array:
    # Statistics in float32 whatever the compute dtype; the result goes back to it.
    return norm(x.astype(jnp.float32)).astype(x.dtype)


def conv3x3(c_in: int, c_out: int, *, stride: int = 1, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    """A plain (not spectrally normalised) 3x3 conv, pad 1, with bias."""
    return nnx.Conv(
        c_in, c_out, (3, 3), strides=stride, padding=((1, 1), (1, 1)), kernel_init=XAVIER_002,
        dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
    )


def sn_conv(c_in: int, c_out: int, k: int = 3, *, stride: int = 1, use_bias: bool = True, dtype,
            rngs: nnx.Rngs) -> SNConv:
    """A spectrally normalised k x k conv with 'same' padding (k // 2) and the reference's init."""
    return SNConv(c_in, c_out, k, strides=stride, padding=k // 2, use_bias=use_bias, kernel_init=XAVIER_002,
                  dtype=dtype, rngs=rngs)


def resize_to(m: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """Bilinear resize (half-pixel centres, no antialiasing: PyTorch's `interpolate(mode='bilinear')`)."""
    if m.shape[1:3] == tuple(hw):
        return m  # the decoder's conditioning maps already match; skip the no-op gather
    return jax.image.resize(m, (m.shape[0], *hw, m.shape[-1]), "bilinear", antialias=False)


def conv1x1_per_sample(x: jax.Array, p: Affine1x1) -> jax.Array:
    """Sample b of x (B, H, W, C_in) convolved with its own 1x1 kernel p.w[b] and bias p.b[b]."""
    y = jnp.einsum("bhwc,bco->bhwo", x, p.w.astype(x.dtype))
    return y + p.b.astype(x.dtype)[:, None, None, :]


def conv_transpose1x1_s2_per_sample(x: jax.Array, p: Affine1x1) -> jax.Array:
    """Per-sample 1x1 transposed conv, stride 2, output_padding 1: (B, H, W, C_in) -> (B, 2H, 2W, C_out).

    A 1x1 stride-2 transposed conv writes W^T x[i, j] + b at (2i, 2j) and only the bias elsewhere,
    so the projection runs at the input size and the result is zero-inserted afterwards (4x fewer
    multiply-adds than projecting a zero-inserted input).
    """
    b, h, w, _ = x.shape
    y = jnp.einsum("bhwc,bco->bhwo", x, p.w.astype(x.dtype))
    y = jnp.pad(y[:, :, None, :, None, :], ((0, 0), (0, 0), (0, 1), (0, 0), (0, 1), (0, 0)))
    return y.reshape(b, 2 * h, 2 * w, -1) + p.b.astype(x.dtype)[:, None, None, :]


class ConvTranspose3x3s2(nnx.Module):
    """A learned 3x3 transposed conv, stride 2, pad 1, output_padding 1 (exactly doubles H and W).

    Written as a conv over the input dilated by 2 with padding (1, 2); a PyTorch ConvTranspose2d
    weight (in, out, 3, 3) maps onto this kernel (3, 3, in, out) flipped in both spatial axes.
    """

    def __init__(self, c_in: int, c_out: int, *, dtype, rngs: nnx.Rngs):
        self.kernel = nnx.Param(XAVIER_002(rngs.params(), (3, 3, c_in, c_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c_out,), jnp.float32))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), self.kernel[...].astype(self.dtype), (1, 1), ((1, 2), (1, 2)),
            lhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...].astype(self.dtype)


class SPADEConv2d(nnx.Module):
    """SN 3x3 conv (stride 1 or 2) -> affine batch norm -> LeakyReLU(0.2); every encoder is built of these.

    The name is the reference's: despite it, no spatial modulation happens here. The encoders' convs
    keep a bias as the reference's do (batch norm cancels it; kept so parameter counts compare); the
    flow generators' convs have none (`use_bias=False`), as there.
    """

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1, use_bias: bool = True, dtype, rngs: nnx.Rngs):
        self.conv = sn_conv(c_in, c_out, 3, stride=stride, use_bias=use_bias, dtype=dtype, rngs=rngs)
        self.norm = batch_norm(c_out, affine=True, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return lrelu(apply_bn(self.norm, self.conv(x)))


class BNResBlock(nnx.Module):
    """Pre-activation residual block with affine batch norm and SN 3x3 convs (fhidden = min(fin, fout)).

    out = shortcut(x) + conv_1(LReLU(BN_1(conv_0(LReLU(BN_0(x)))))); the shortcut is a bias-free SN
    1x1 conv of BN_s(x) when fin != fout, else x. Used by the hybrid fusion and the flow generators.
    """

    def __init__(self, fin: int, fout: int, *, dtype, rngs: nnx.Rngs):
        fh = min(fin, fout)
        self.norm_0 = batch_norm(fin, affine=True, rngs=rngs)
        self.conv_0 = sn_conv(fin, fh, dtype=dtype, rngs=rngs)
        self.norm_1 = batch_norm(fh, affine=True, rngs=rngs)
        self.conv_1 = sn_conv(fh, fout, dtype=dtype, rngs=rngs)
        if fin != fout:
            self.norm_s = batch_norm(fin, affine=True, rngs=rngs)
            self.conv_s = sn_conv(fin, fout, 1, use_bias=False, dtype=dtype, rngs=rngs)
        else:
            self.norm_s, self.conv_s = None, None

    def __call__(self, x: jax.Array) -> jax.Array:
        x_s = x if self.conv_s is None else self.conv_s(apply_bn(self.norm_s, x))
        dx = self.conv_0(lrelu(apply_bn(self.norm_0, x)))
        dx = self.conv_1(lrelu(apply_bn(self.norm_1, dx)))
        return x_s + dx


class SPADE(nnx.Module):
    """Spatially-adaptive denormalisation with one or more conditioning branches.

    out = BN(x) (parameter-free), then for each branch i whose map is given, in order:
    out = out * (1 + gamma_i) + beta_i with gamma_i, beta_i 1x1 convs of the map resized bilinearly
    to x. With `generated_first`, branch 0 has no parameters: its 1x1 weights and biases come per
    sample from the weight generator (`SPADEAffine`). Several branches at once are how the
    composition blocks' shortcut norm applies every modulation in sequence.
    """

    def __init__(self, norm_nc: int, cond_nc: Sequence[int], *, generated_first: bool = False, dtype,
                 rngs: nnx.Rngs):
        self.norm = batch_norm(norm_nc, affine=False, rngs=rngs)

        def conv1x1(c_in: int) -> nnx.Conv:
            return nnx.Conv(c_in, norm_nc, (1, 1), kernel_init=XAVIER_002, dtype=dtype, param_dtype=jnp.float32,
                            rngs=rngs)

        self.gamma = nnx.List([None if (i == 0 and generated_first) else conv1x1(c) for i, c in enumerate(cond_nc)])
        self.beta = nnx.List([None if (i == 0 and generated_first) else conv1x1(c) for i, c in enumerate(cond_nc)])
        self.generated_first, self.dtype = generated_first, dtype

    def __call__(self, x: jax.Array, maps: Sequence[jax.Array | None], generated: SPADEAffine | None = None) -> jax.Array:
        if len(maps) > len(self.gamma):
            raise ValueError(f"SPADE: {len(maps)} conditioning maps for {len(self.gamma)} branches")
        out = apply_bn(self.norm, x.astype(self.dtype))
        for i, m in enumerate(maps):
            if m is None:
                continue
            m = resize_to(m.astype(self.dtype), out.shape[1:3])
            if i == 0 and self.generated_first:
                if generated is None:
                    raise ValueError("SPADE: branch 0 takes generated weights, none given")
                gamma, beta = conv1x1_per_sample(m, generated.gamma), conv1x1_per_sample(m, generated.beta)
            else:
                gamma, beta = self.gamma[i](m), self.beta[i](m)
            out = out * (1 + gamma) + beta
        return out


class SPADEResBlock(nnx.Module):
    """out = shortcut(x) + conv_1(LReLU(SPADE_1(conv_0(LReLU(SPADE_0(x, c))), c))), fhidden = min(fin, fout).

    SN 3x3 convs; when fin != fout the shortcut is a bias-free SN 1x1 conv of SPADE_s(x, c).
    `generated` makes every norm's gamma/beta per-sample (weights from `BlockAffines`).
    """

    def __init__(self, fin: int, fout: int, cond_nc: int, *, generated: bool = False, dtype, rngs: nnx.Rngs):
        fh = min(fin, fout)
        self.norm_0 = SPADE(fin, [cond_nc], generated_first=generated, dtype=dtype, rngs=rngs)
        self.conv_0 = sn_conv(fin, fh, dtype=dtype, rngs=rngs)
        self.norm_1 = SPADE(fh, [cond_nc], generated_first=generated, dtype=dtype, rngs=rngs)
        self.conv_1 = sn_conv(fh, fout, dtype=dtype, rngs=rngs)
        if fin != fout:
            self.norm_s = SPADE(fin, [cond_nc], generated_first=generated, dtype=dtype, rngs=rngs)
            self.conv_s = sn_conv(fin, fout, 1, use_bias=False, dtype=dtype, rngs=rngs)
        else:
            self.norm_s, self.conv_s = None, None

    def __call__(self, x: jax.Array, cond: jax.Array, generated: BlockAffines | None = None) -> jax.Array:
        g = generated or BlockAffines(None, None, None)
        x_s = x if self.conv_s is None else self.conv_s(self.norm_s(x, [cond], g.norm_s))
        dx = self.conv_0(lrelu(self.norm_0(x, [cond], g.norm_0)))
        dx = self.conv_1(lrelu(self.norm_1(dx, [cond], g.norm_1)))
        return x_s + dx


class SPADEResBlockConcat(nnx.Module):
    """The composition block: one SPADE per conditioning branch, their activations averaged.

    dx = conv_0(mean_b LReLU(SPADE_0b(x, c_b))); out = shortcut(x) + conv_1(mean_b LReLU(SPADE_1b(dx, c_b))),
    the means over the branches whose map is given (None = branch absent). fhidden = min(3 fin, fout).
    Branch 0 (the landmark embedding) may take generated weights; the other branches (warped-image
    embeddings) always learn theirs. The shortcut norm applies all given branches in sequence.
    """

    def __init__(self, fin: int, fout: int, cond_nc: Sequence[int], *, generated: bool = False, dtype,
                 rngs: nnx.Rngs):
        fh = min(3 * fin, fout)
        self.norm_0 = nnx.List([SPADE(fin, [c], generated_first=generated and i == 0, dtype=dtype, rngs=rngs)
                                for i, c in enumerate(cond_nc)])
        self.conv_0 = sn_conv(fin, fh, dtype=dtype, rngs=rngs)
        self.norm_1 = nnx.List([SPADE(fh, [c], generated_first=generated and i == 0, dtype=dtype, rngs=rngs)
                                for i, c in enumerate(cond_nc)])
        self.conv_1 = sn_conv(fh, fout, dtype=dtype, rngs=rngs)
        if fin != fout:
            self.norm_s = SPADE(fin, cond_nc, generated_first=generated, dtype=dtype, rngs=rngs)
            self.conv_s = sn_conv(fin, fout, 1, use_bias=False, dtype=dtype, rngs=rngs)
        else:
            self.norm_s, self.conv_s = None, None

    def _mean_branches(self, norms: nnx.List, x: jax.Array, conds: Sequence[jax.Array | None],
                       first: SPADEAffine | None) -> jax.Array:
        outs = [lrelu(norms[i](x, [c], first if i == 0 else None)) for i, c in enumerate(conds) if c is not None]
        return sum(outs) / len(outs)

    def __call__(self, x: jax.Array, conds: Sequence[jax.Array | None], generated: BlockAffines | None = None) -> jax.Array:
        if len(conds) > len(self.norm_0) or conds[0] is None:
            raise ValueError(f"SPADEResBlockConcat: needs the landmark map first and at most {len(self.norm_0)} maps")
        g = generated or BlockAffines(None, None, None)
        x_s = x if self.conv_s is None else self.conv_s(self.norm_s(x, conds, g.norm_s))
        dx = self.conv_0(self._mean_branches(self.norm_0, x, conds, g.norm_0))
        dx = self.conv_1(self._mean_branches(self.norm_1, dx, conds, g.norm_1))
        return x_s + dx


class LinearStack(nnx.Module):
    """n SN linears with no activation between them (the reference's weight-generator heads).

    Being linear, the stack could be folded into one matrix; it is kept because spectral norm on
    each factor bounds the product differently from one normalised matrix, and parameter counts compare.
    """

    def __init__(self, sizes: Sequence[int], *, dtype, rngs: nnx.Rngs):
        self.layers = nnx.List([SNLinear(a, b, kernel_init=XAVIER_002, dtype=dtype, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x
