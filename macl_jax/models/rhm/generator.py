"""The Rhythmic Head Motion image generator (Chen et al., ECCV 2020) as NNX modules, NHWC.

From K reference frames (images and landmark maps), a target landmark map, a matched reference
and (optionally) a rendered "ani" frame, it synthesises the target frame. The parts, in the order
they run (docs/rhm_generator.md has the reasons behind each choice):

* `AttentionGenerator`: per-pixel softmax over the K references of <key_k, query> at 1/4
  resolution (landmark-map features), and `ref_idx`, the reference with the most attention.
* `ReferenceEncoder`: image and landmark encoders over all B*K references; at 1/4 resolution the
  K streams are fused (hybrid fusion) into one per sample, then encoded to the bottleneck.
* `CombEncoder` + `WeightGenerator`: channel-by-channel products of the two bottleneck streams
  give a matrix per scale; linear heads turn its rows into per-sample 1x1 weights and biases for
  the adaptive decoder layers' SPADE and the label embedder's upsampling.
* `LabelEmbedder`: the target landmark map -> conditioning maps at every scale.
* `FlowGenerator` (x2): flow and confidence from (target map, source map, source image); the
  source is warped and embedded (`WarpedImageEmbedder`) for the composition.
* The decoder: SPADE residual blocks from the bottleneck up; the top `n_sc_layers` blocks compose
  the landmark branch with the warped-image branches (docs/rhm_generator.md#composition-layers),
  and run a second time with the landmark branch alone for the `raw_image` output.

Compute in `dtype`; parameters, batch norm, softmax and the outputs are float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.geometry.resample import warp
from macl_jax.models.renderers.resunet import upsample_nearest2x
from macl_jax.models.rhm.layers import (
    Affine1x1, BlockAffines, BNResBlock, ConvTranspose3x3s2, LinearStack, SPADEAffine, SPADEConv2d,
    SPADEResBlock, SPADEResBlockConcat, conv3x3, conv_transpose1x1_s2_per_sample, lrelu,
)

__all__ = [
    "RHMSizes", "RHMGenerator", "AttentionGenerator", "ReferenceEncoder", "CombEncoder", "WeightGenerator",
    "LabelEmbedder", "WarpedImageEmbedder", "FlowGenerator", "count_params",
]


@dataclasses.dataclass(frozen=True)
class RHMSizes:
    """Sizes and switches of the generator. Channels at scale i (size image_size / 2**i) are
    `channels[i] = min(ngf * 2**i, 1024)`, and never more than the bottleneck's."""

    ngf: int = 32
    n_downsample: int = 5           # encoder / decoder depth: bottleneck at image_size / 2**n_downsample
    n_downsample_fusion: int = 2    # attention and hybrid fusion at image_size / 2**n_downsample_fusion
    n_adaptive_layers: int = 4      # decoder layers 0..n-1 (the finest) take generated SPADE weights
    n_sc_layers: int = 2            # decoder layers 0..n-1 compose the warped images (and give raw_image)
    n_fc_layers: int = 2            # hidden linears per weight-generator head
    num_refs: int = 8               # K; the hybrid fusion's weights depend on it
    image_size: int = 256
    flow_ngf: int = 32
    flow_n_downsample: int = 3
    flow_n_blocks: int = 6
    adaptive_spade: bool = True     # False: every SPADE learns its gamma/beta convs (no weight generation)
    warp_ref: bool = True           # warp the matched reference into the composition
    warp_ani: bool = True           # warp the rendered frame into the composition (False: the no-ani ablation)
    hybrid_fusion: bool = True      # False: fuse the K streams by the attention-weighted sum alone

    def __post_init__(self):
        if self.ngf < 1 or self.n_downsample < 1:
            raise ValueError(f"RHMSizes: ngf and n_downsample must be >= 1, got {self.ngf}, {self.n_downsample}")
        if not 1 <= self.n_downsample_fusion <= self.n_downsample:
            raise ValueError(f"RHMSizes: n_downsample_fusion must be in [1, n_downsample], got {self.n_downsample_fusion}")
        if not 0 <= self.n_adaptive_layers <= self.n_downsample:
            raise ValueError(f"RHMSizes: n_adaptive_layers must be in [0, n_downsample], got {self.n_adaptive_layers}")
        if not 0 <= self.n_sc_layers <= self.n_downsample + 1:
            raise ValueError(f"RHMSizes: n_sc_layers must be in [0, n_downsample + 1], got {self.n_sc_layers}")
        if self.num_refs < 1 or self.n_fc_layers < 1:
            raise ValueError(f"RHMSizes: num_refs and n_fc_layers must be >= 1, got {self.num_refs}, {self.n_fc_layers}")
        if self.image_size % (2 ** max(self.n_downsample, self.flow_n_downsample)):
            raise ValueError(f"RHMSizes: image_size {self.image_size} must be divisible by 2**n_downsample "
                             f"and 2**flow_n_downsample")

    @property
    def channels(self) -> tuple[int, ...]:
        """ch[0..n_downsample+1]; ch[n_downsample + 1] (the decoder's input width) equals the bottleneck's."""
        top = min(1024, self.ngf * 2**self.n_downsample)
        return tuple(min(self.ngf * 2**i, top) for i in range(self.n_downsample + 2))

    @classmethod
    def tiny(cls, **overrides) -> "RHMSizes":
        """CPU tests: 32 px, 3 downsamplings, K 2; every kind of decoder layer (composed and generated,
        plain and generated, plain and learned) once, and the fewest layers elsewhere."""
        base = dict(ngf=8, n_downsample=3, n_downsample_fusion=2, n_adaptive_layers=3, n_sc_layers=2, num_refs=2,
                    n_fc_layers=1, image_size=32, flow_ngf=8, flow_n_downsample=1, flow_n_blocks=1)
        return cls(**{**base, **overrides})

    @classmethod
    def cpu(cls, **overrides) -> "RHMSizes":
        """CPU runs: 64 px, 4 downsamplings, K 4."""
        base = dict(ngf=16, n_downsample=4, n_downsample_fusion=2, n_adaptive_layers=3, n_sc_layers=2, num_refs=4,
                    image_size=64, flow_ngf=16, flow_n_downsample=3, flow_n_blocks=2)
        return cls(**{**base, **overrides})

    @classmethod
    def full(cls, **overrides) -> "RHMSizes":
        """The reference configuration: 256 px, ngf 32, 5 downsamplings, K 8."""
        return cls(**overrides)


def _run(layers: nnx.List, x: jax.Array) -> jax.Array:
    for layer in layers:
        x = layer(x)
    return x


class AttentionGenerator(nnx.Module):
    """Which reference matters where: a_k(p) = softmax_k <key_k(p), query(p)>.

    Query and key branches (separate weights) are SPADEConv2d 1 -> ch0 then n_downsample_fusion
    stride-2 SPADEConv2d. Returns attention (B, K, h, w) float32 and ref_idx (B,) int32, the
    reference with the largest summed attention.
    """

    def __init__(self, s: RHMSizes, *, dtype, rngs: nnx.Rngs):
        ch = s.channels

        def branch() -> nnx.List:
            return nnx.List([SPADEConv2d(1, ch[0], dtype=dtype, rngs=rngs)] + [
                SPADEConv2d(ch[i], ch[i + 1], stride=2, dtype=dtype, rngs=rngs) for i in range(s.n_downsample_fusion)
            ])

        self.query, self.key = branch(), branch()

    def __call__(self, target_map: jax.Array, ref_maps: jax.Array) -> tuple[jax.Array, jax.Array]:
        q = _run(self.query, target_map)
        k = _run(self.key, ref_maps)
        b = q.shape[0]
        k = k.reshape(b, k.shape[0] // b, *k.shape[1:])
        energy = jnp.einsum("bkhwc,bhwc->bkhw", k.astype(jnp.float32), q.astype(jnp.float32))
        attention = jax.nn.softmax(energy, axis=1)
        return attention, jnp.argmax(jnp.sum(attention, axis=(2, 3)), axis=1).astype(jnp.int32)


class ReferenceEncoder(nnx.Module):
    """Image and landmark encoders over the B*K references, fused into one stream per sample.

    Each stream: SPADEConv2d in -> ch0, then n_downsample stride-2 SPADEConv2d. After the
    n_downsample_fusion-th downsampling (c channels), with K > 1 and hybrid fusion:
    f_k = BNResBlock(concat(x_k, l_k)) (2c -> c, the cross-modal exchange); s_x = SPADEConv2d over
    the K streams stacked on channels (K c -> c); x'_k = SPADEConv2d(concat(x_k, f_k)); and
    x = sum_k a_k x'_k + s_x, the same for l with its own weights. Stacking the K streams makes the
    width K c: these weights exist for one K only (docs/rhm_generator.md#k-dependent-fusion).
    Without hybrid fusion, x = sum_k a_k x_k.
    """

    def __init__(self, s: RHMSizes, *, dtype, rngs: nnx.Rngs):
        ch, k = s.channels, s.num_refs
        self.image_in = SPADEConv2d(3, ch[0], dtype=dtype, rngs=rngs)
        self.map_in = SPADEConv2d(1, ch[0], dtype=dtype, rngs=rngs)
        self.image_down = nnx.List([SPADEConv2d(ch[i], ch[i + 1], stride=2, dtype=dtype, rngs=rngs)
                                    for i in range(s.n_downsample)])
        self.map_down = nnx.List([SPADEConv2d(ch[i], ch[i + 1], stride=2, dtype=dtype, rngs=rngs)
                                  for i in range(s.n_downsample)])
        self.fuse_after = s.n_downsample_fusion - 1
        c = ch[s.n_downsample_fusion]
        if k > 1 and s.hybrid_fusion:
            self.cross = BNResBlock(2 * c, c, dtype=dtype, rngs=rngs)
            self.self_image = SPADEConv2d(k * c, c, dtype=dtype, rngs=rngs)
            self.self_map = SPADEConv2d(k * c, c, dtype=dtype, rngs=rngs)
            self.refine_image = SPADEConv2d(2 * c, c, dtype=dtype, rngs=rngs)
            self.refine_map = SPADEConv2d(2 * c, c, dtype=dtype, rngs=rngs)
        else:
            self.cross = self.self_image = self.self_map = self.refine_image = self.refine_map = None

    def __call__(self, images: jax.Array, maps: jax.Array, attention: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images (B*K, H, W, 3), maps (B*K, H, W, 1), attention (B, K, h, w) -> (x, l) at the bottleneck, (B, ...)."""
        x, l = self.image_in(images), self.map_in(maps)
        for i, (down_x, down_l) in enumerate(zip(self.image_down, self.map_down)):
            x, l = down_x(x), down_l(l)
            if i == self.fuse_after:
                x, l = self._fuse(x, l, attention)
        return x, l

    def _fuse(self, x: jax.Array, l: jax.Array, attention: jax.Array) -> tuple[jax.Array, jax.Array]:
        b, k = attention.shape[:2]
        if k == 1:
            return x, l
        a = attention[..., None].astype(x.dtype)

        def weighted(z: jax.Array) -> jax.Array:
            return jnp.sum(z.reshape(b, k, *z.shape[1:]) * a, axis=1)

        if self.cross is None:
            return weighted(x), weighted(l)

        def stacked(z: jax.Array) -> jax.Array:  # (B*K, h, w, c) -> (B, h, w, K*c), reference k's channels contiguous
            _, h, w, c = z.shape
            return z.reshape(b, k, h, w, c).transpose(0, 2, 3, 1, 4).reshape(b, h, w, k * c)

        f = self.cross(jnp.concatenate([x, l], axis=-1))
        s_x, s_l = self.self_image(stacked(x)), self.self_map(stacked(l))
        x = self.refine_image(jnp.concatenate([x, f], axis=-1))
        l = self.refine_map(jnp.concatenate([l, f], axis=-1))
        return weighted(x) + s_x, weighted(l) + s_l


class CombEncoder(nnx.Module):
    """Matrices M_j (B, ch_j, ch_j), M_j[c, c'] = sum_p x_j[p, c] softmax_c'(l_j)[p, c'], at the bottleneck size.

    Starting from the bottleneck streams (level n_downsample), each step down one level runs both
    streams through SPADEConv2d ch_{j+1} -> ch_j (stride 1). Only the levels the weight generator
    reads (1 .. n_adaptive_layers) are computed; the walk stops at level 1 (the reference continues
    to level 0, whose matrix nothing reads).
    """

    def __init__(self, s: RHMSizes, *, dtype, rngs: nnx.Rngs):
        ch = s.channels
        self.top, self.needed = s.n_downsample, tuple(range(1, s.n_adaptive_layers + 1))
        self.image_step = nnx.List([SPADEConv2d(ch[j + 1], ch[j], dtype=dtype, rngs=rngs)
                                    for j in reversed(range(1, s.n_downsample))])
        self.map_step = nnx.List([SPADEConv2d(ch[j + 1], ch[j], dtype=dtype, rngs=rngs)
                                  for j in reversed(range(1, s.n_downsample))])

    @staticmethod
    def product(x: jax.Array, l: jax.Array) -> jax.Array:
        """(B, h, w, c) x (B, h, w, c) -> (B, c, c) in float32; softmax over the landmark channels."""
        b, _, _, c = x.shape
        p = jax.nn.softmax(l.reshape(b, -1, c).astype(jnp.float32), axis=-1)
        return jnp.einsum("bpc,bpd->bcd", x.reshape(b, -1, c).astype(jnp.float32), p)

    def __call__(self, x: jax.Array, l: jax.Array) -> dict[int, jax.Array]:
        mats = {}
        level = self.top
        if level in self.needed:
            mats[level] = self.product(x, l)
        for step_x, step_l in zip(self.image_step, self.map_step):
            x, l, level = step_x(x), step_l(l), level - 1
            if level in self.needed:
                mats[level] = self.product(x, l)
        return mats


class WeightGenerator(nnx.Module):
    """Per-sample 1x1 weights and biases for the adaptive decoder layers and the label embedder.

    Layer i (i < n_adaptive_layers) reads M_{i+1}: each of its r = ch_{i+1} rows goes through
    heads of n_fc_layers + 1 SN linears (r -> r ... -> out, no activation). Rows index output
    channels: the SPADE heads give gamma and beta weights (ch_i inputs) and biases for each
    normalised channel (two rows per channel when the norm has half as many channels as rows);
    the embed head gives row r's weights of the stride-2 transposed 1x1 conv ch_{i+1} -> ch_i plus
    one bias value, of which the first ch_i are the conv's biases. The reference generates the
    SPADE biases too but never applies them; here they are applied (docs/rhm_generator.md#generated-biases).
    """

    def __init__(self, s: RHMSizes, *, dtype, rngs: nnx.Rngs):
        ch = s.channels
        shapes = []
        heads_0, heads_1, heads_s, heads_e = [], [], [], []
        for i in range(s.n_adaptive_layers):
            r, c_cond, fin, fh = ch[i + 1], ch[i], ch[i + 1], ch[i]
            hidden = [r] * (s.n_fc_layers + 1)

            def head(n_norm: int) -> LinearStack:
                total = 2 * (c_cond + 1) * n_norm
                assert total % r == 0, (total, r)  # ch_{i+1} is ch_i or 2 ch_i
                return LinearStack(hidden + [total // r], dtype=dtype, rngs=rngs)

            heads_0.append(head(fin))
            heads_1.append(head(fh))
            heads_s.append(head(fin) if fin != ch[i] else None)  # a shortcut norm exists only when fin != fout
            heads_e.append(LinearStack(hidden + [ch[i] + 1], dtype=dtype, rngs=rngs))
            shapes.append((c_cond, fin, fh))
        self.shapes = tuple(shapes)
        self.norm_0, self.norm_1 = nnx.List(heads_0), nnx.List(heads_1)
        self.norm_s, self.embed = nnx.List(heads_s), nnx.List(heads_e)

    @staticmethod
    def _spade(out: jax.Array, c_cond: int, n_norm: int) -> SPADEAffine:
        t = out.reshape(out.shape[0], n_norm, 2, c_cond + 1)

        def affine(j: int) -> Affine1x1:
            return Affine1x1(jnp.swapaxes(t[:, :, j, :c_cond], 1, 2), t[:, :, j, c_cond])

        return SPADEAffine(affine(0), affine(1))

    def __call__(self, mats: dict[int, jax.Array]) -> tuple[list[BlockAffines], list[Affine1x1]]:
        """-> (per adaptive decoder layer, its SPADE weights; per layer, the label embedder's up-conv weights)."""
        blocks, embeds = [], []
        for i, (c_cond, fin, fh) in enumerate(self.shapes):
            rows = mats[i + 1]  # (B, r, r)
            norm_s = None if self.norm_s[i] is None else self._spade(self.norm_s[i](rows), c_cond, fin)
            blocks.append(BlockAffines(self._spade(self.norm_0[i](rows), c_cond, fin),
                                       self._spade(self.norm_1[i](rows), c_cond, fh), norm_s))
            e = self.embed[i](rows)  # (B, ch_{i+1}, ch_i + 1)
            embeds.append(Affine1x1(e[..., :c_cond], e[:, :c_cond, c_cond]))
        return blocks, embeds


class LabelEmbedder(nnx.Module):
    """Target landmark map -> conditioning maps E_i (ch_i at image_size / 2**i), i = 0..n_downsample.

    Plain convs (no norm): 3x3 conv + LReLU, n_downsample x (3x3 stride-2 conv + LReLU) to the
    bottleneck (E_n); back up, level i is a learned 3x3 stride-2 transposed conv + LReLU, or, for
    the first `n_generated` levels, the generated per-sample 1x1 stride-2 transposed conv (no activation).
    """

    def __init__(self, s: RHMSizes, n_generated: int, *, dtype, rngs: nnx.Rngs):
        ch = s.channels
        self.first = conv3x3(1, ch[0], dtype=dtype, rngs=rngs)
        self.down = nnx.List([conv3x3(ch[i], ch[i + 1], stride=2, dtype=dtype, rngs=rngs) for i in range(s.n_downsample)])
        self.up = nnx.List([None if i < n_generated else ConvTranspose3x3s2(ch[i + 1], ch[i], dtype=dtype, rngs=rngs)
                            for i in range(s.n_downsample)])

    def __call__(self, label: jax.Array, generated: list[Affine1x1]) -> list[jax.Array]:
        y = lrelu(self.first(label))
        for down in self.down:
            y = lrelu(down(y))
        out = [y]
        for i in reversed(range(len(self.up))):
            y = conv_transpose1x1_s2_per_sample(y, generated[i]) if self.up[i] is None else lrelu(self.up[i](y))
            out.append(y)
        return out[::-1]


class WarpedImageEmbedder(nnx.Module):
    """concat(warped image, confidence) (4 ch) -> features at the top `levels` scales (ch_i at size / 2**i).

    The reference builds this encoder to the bottleneck although only the composed decoder layers
    read it; the unused deeper levels are not built here (docs/rhm_generator.md#built-only-if-read).
    """

    def __init__(self, s: RHMSizes, levels: int, *, dtype, rngs: nnx.Rngs):
        ch = s.channels
        self.first = conv3x3(4, ch[0], dtype=dtype, rngs=rngs)
        self.down = nnx.List([conv3x3(ch[i], ch[i + 1], stride=2, dtype=dtype, rngs=rngs) for i in range(levels - 1)])

    def __call__(self, x: jax.Array) -> list[jax.Array]:
        out = [lrelu(self.first(x))]
        for down in self.down:
            out.append(lrelu(down(out[-1])))
        return out


class FlowGenerator(nnx.Module):
    """concat(target map, source map, source image) -> (flow in pixels (B, H, W, 2), confidence (B, H, W, 1)).

    SN 3x3 conv + BN + LReLU, flow_n_downsample stride-2 of them, flow_n_blocks BNResBlocks, the
    same number of (nearest x2, SN conv, BN, LReLU) back up; flow = 20 x conv3x3 (the conv's small
    output scaled to pixel displacements), confidence = sigmoid(conv3x3). Both float32.
    """

    FLOW_SCALE = 20.0

    def __init__(self, s: RHMSizes, *, dtype, rngs: nnx.Rngs):
        nf, nd = s.flow_ngf, s.flow_n_downsample
        fch = [min(1024, nf * 2**i) for i in range(nd + 1)]
        self.conv_in = SPADEConv2d(5, nf, use_bias=False, dtype=dtype, rngs=rngs)
        self.down = nnx.List([SPADEConv2d(fch[i], fch[i + 1], stride=2, use_bias=False, dtype=dtype, rngs=rngs)
                              for i in range(nd)])
        self.blocks = nnx.List([BNResBlock(fch[nd], fch[nd], dtype=dtype, rngs=rngs) for _ in range(s.flow_n_blocks)])
        self.up = nnx.List([SPADEConv2d(fch[i + 1], fch[i], use_bias=False, dtype=dtype, rngs=rngs)
                            for i in reversed(range(nd))])
        self.conv_flow = conv3x3(nf, 2, dtype=dtype, rngs=rngs)
        self.conv_weight = conv3x3(nf, 1, dtype=dtype, rngs=rngs)

    def __call__(self, target_map: jax.Array, source_map: jax.Array, source_image: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = self.conv_in(jnp.concatenate([target_map, source_map, source_image], axis=-1))
        y = _run(self.blocks, _run(self.down, y))
        for up in self.up:
            y = up(upsample_nearest2x(y))
        flow = self.conv_flow(y).astype(jnp.float32) * self.FLOW_SCALE
        return flow, jax.nn.sigmoid(self.conv_weight(y).astype(jnp.float32))


class RHMGenerator(nnx.Module):
    """The generator; `__call__` returns a dict (see there). `model.train()` / `model.eval()` switch
    batch norm and spectral norm between batch statistics + power step and stored state."""

    def __init__(self, sizes: RHMSizes, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
        s = self.sizes = sizes
        self.dtype = dtype
        ch = s.channels
        self.attention = AttentionGenerator(s, dtype=dtype, rngs=rngs) if s.num_refs > 1 else None
        self.encoder = ReferenceEncoder(s, dtype=dtype, rngs=rngs)
        adaptive = s.adaptive_spade and s.n_adaptive_layers > 0
        self.comb_encoder = CombEncoder(s, dtype=dtype, rngs=rngs) if adaptive else None
        self.weight_gen = WeightGenerator(s, dtype=dtype, rngs=rngs) if adaptive else None
        self.label_embedder = LabelEmbedder(s, s.n_adaptive_layers if adaptive else 0, dtype=dtype, rngs=rngs)

        def warp_branch(on: bool):
            if not on:
                return None, None
            embed = WarpedImageEmbedder(s, s.n_sc_layers, dtype=dtype, rngs=rngs) if s.n_sc_layers else None
            return FlowGenerator(s, dtype=dtype, rngs=rngs), embed

        self.flow_ref, self.embed_ref = warp_branch(s.warp_ref)
        self.flow_ani, self.embed_ani = warp_branch(s.warp_ani)
        n_branches = 1 + int(s.warp_ref) + int(s.warp_ani)
        blocks = []
        for i in range(s.n_downsample + 1):
            generated = adaptive and i < s.n_adaptive_layers
            if i < s.n_sc_layers:
                blocks.append(SPADEResBlockConcat(ch[i + 1], ch[i], [ch[i]] * n_branches, generated=generated,
                                                  dtype=dtype, rngs=rngs))
            else:
                blocks.append(SPADEResBlock(ch[i + 1], ch[i], ch[i], generated=generated, dtype=dtype, rngs=rngs))
        self.decoder = nnx.List(blocks)  # decoder[i] runs at image_size / 2**i
        self.conv_img = conv3x3(ch[0], 3, dtype=dtype, rngs=rngs)

    def _check(self, target_map, ref_images, ref_maps, warp_image, warp_map, ani_image, ani_map) -> None:
        s = self.sizes
        if target_map.ndim != 4 or target_map.shape[-1] != 1:
            raise ValueError(f"RHMGenerator: target_map must be (B, H, W, 1), got {target_map.shape}")
        b, h, w, _ = target_map.shape
        factor = 2 ** max(s.n_downsample, s.flow_n_downsample)
        if h % factor or w % factor:
            raise ValueError(f"RHMGenerator: H and W must be divisible by {factor}, got {h}x{w}")
        k = s.num_refs
        if ref_images.shape != (b, k, h, w, 3) or ref_maps.shape != (b, k, h, w, 1):
            raise ValueError(f"RHMGenerator: references must be ({b}, {k}, {h}, {w}, 3|1) (K is fixed by the "
                             f"sizes), got {ref_images.shape} and {ref_maps.shape}")
        for on, name, image, lmap in (
            (s.warp_ref, "warp", warp_image, warp_map), (s.warp_ani, "ani", ani_image, ani_map),
        ):
            if on and (image is None or lmap is None or image.shape != (b, h, w, 3) or lmap.shape != (b, h, w, 1)):
                raise ValueError(f"RHMGenerator: {name}_image (B, H, W, 3) and {name}_map (B, H, W, 1) are required "
                                 f"when warping them, got {getattr(image, 'shape', None)}, {getattr(lmap, 'shape', None)}")

    def __call__(
        self, target_map: jax.Array, ref_images: jax.Array, ref_maps: jax.Array,
        warp_image: jax.Array | None = None, warp_map: jax.Array | None = None,
        ani_image: jax.Array | None = None, ani_map: jax.Array | None = None,
    ) -> dict[str, jax.Array | None]:
        """Images in [-1, 1], landmark maps 1-channel in [0, 1], NHWC; references (B, K, H, W, C).

        Returns float32 `image` and `raw_image` (B, H, W, 3) in [-1, 1] (raw: the composed layers
        with the landmark branch only; None when n_sc_layers is 0); `flow_*` (B, H, W, 2) in pixels,
        `weight_*` (B, H, W, 1), `warped_*` (B, H, W, 3) for * in ref, ani (None when disabled);
        `attention` (B, K, H / 2**f, W / 2**f) summing to 1 over K; `ref_idx` (B,) int32.
        """
        self._check(target_map, ref_images, ref_maps, warp_image, warp_map, ani_image, ani_map)
        s, dt = self.sizes, self.dtype
        b, h, w, _ = target_map.shape
        k = s.num_refs
        tgt = target_map.astype(dt)
        images = ref_images.reshape(b * k, h, w, 3).astype(dt)
        maps = ref_maps.reshape(b * k, h, w, 1).astype(dt)

        if self.attention is not None:
            attention, ref_idx = self.attention(tgt, maps)
        else:  # one reference: the softmax over K is identically 1
            f = 2**s.n_downsample_fusion
            attention, ref_idx = jnp.ones((b, 1, h // f, w // f), jnp.float32), jnp.zeros((b,), jnp.int32)
        x, l = self.encoder(images, maps, attention)

        block_weights, embed_weights = [], []
        if self.weight_gen is not None:
            block_weights, embed_weights = self.weight_gen(self.comb_encoder(x, l))
        labels = self.label_embedder(tgt, embed_weights)

        out: dict[str, jax.Array | None] = {"attention": attention, "ref_idx": ref_idx}
        warped_feats = []
        for name, flow_net, embed, image, lmap in (
            ("ref", self.flow_ref, self.embed_ref, warp_image, warp_map),
            ("ani", self.flow_ani, self.embed_ani, ani_image, ani_map),
        ):
            if flow_net is None:
                out.update({f"flow_{name}": None, f"weight_{name}": None, f"warped_{name}": None})
                continue
            flow, weight = flow_net(tgt, lmap.astype(dt), image.astype(dt))
            warped = warp(image.astype(jnp.float32), flow)
            out.update({f"flow_{name}": flow, f"weight_{name}": weight, f"warped_{name}": warped})
            if embed is not None:
                warped_feats.append(embed(jnp.concatenate([warped, weight], axis=-1).astype(dt)))

        y, y_raw = x, None
        for i in reversed(range(s.n_downsample + 1)):
            block = self.decoder[i]
            g = block_weights[i] if i < len(block_weights) else None
            if i < s.n_sc_layers:
                if i == s.n_sc_layers - 1:
                    y_raw = y
                y_raw = block(y_raw, [labels[i]], g)
                y = block(y, [labels[i]] + [feats[i] for feats in warped_feats], g)
            else:
                y = block(y, labels[i], g)
            if i > 0:
                y = upsample_nearest2x(y)
                y_raw = None if y_raw is None else upsample_nearest2x(y_raw)

        def head(z: jax.Array) -> jax.Array:
            return jnp.tanh(self.conv_img(lrelu(z)).astype(jnp.float32))

        out["image"] = head(y)
        out["raw_image"] = None if y_raw is None else head(y_raw)
        return out


def count_params(model: nnx.Module) -> int:
    """Trainable parameters (batch-norm statistics and spectral-norm vectors excluded)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
