"""ResUnet generator and PatchGAN: reference sizes, and a forward pass against a numpy restatement."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.renderers import PatchGAN, ResUnetGenerator, count_params
from macl_jax.models.renderers.patchgan import instance_norm
from macl_jax.train.state import split_model


def test_full_generator_has_the_reference_parameter_count_per_level():
    model = nnx.eval_shape(lambda: ResUnetGenerator(6, 3, num_downs=6, ngf=64, rngs=nnx.Rngs(0)))
    assert count_params(model) == 69_860_736  # docs/decisions.md#parameter-counts
    per_level, level = [], model.net
    while level is not None:
        inner = count_params(level.inner) if level.inner is not None else 0
        per_level.append(count_params(level) - inner)
        level = level.inner
    assert per_level == [154_880, 960_384, 3_837_696, 15_343_104, 25_962_496, 23_602_176]


# ----------------------------------------------------------------------------- numpy reference


def _conv(x, k, stride):
    """3x3 cross-correlation, pad 1, NHWC x HWIO (PyTorch Conv2d semantics)."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h = (x.shape[1] - 1) // stride + 1
    w = (x.shape[2] - 1) // stride + 1
    out = np.zeros((x.shape[0], h, w, k.shape[-1]))
    for i in range(3):
        for j in range(3):
            patch = xp[:, i : i + stride * h : stride, j : j + stride * w : stride]
            out += patch @ k[i, j]
    return out


def _bn(x, p):
    """Training-mode BatchNorm: batch statistics over N, H, W (biased variance), eps 1e-5."""
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _res(x, p):
    y = np.maximum(_bn(_conv(x, p["conv1"]["kernel"], 1), p["norm1"]), 0)
    y = _bn(_conv(y, p["conv2"]["kernel"], 1), p["norm2"])
    return np.maximum(x + y, 0)


def _level(x, p, outermost):
    y = _conv(x, p["down"]["kernel"], 2)
    if "down_norm" in p:
        y = _bn(y, p["down_norm"])
    y = np.maximum(y, 0)
    for block in p["down_res"].values():
        y = _res(y, block)
    if "inner" in p:
        y = _level(y, p["inner"], False)
    y = _conv(y.repeat(2, axis=1).repeat(2, axis=2), p["up"]["kernel"], 1)
    if outermost:
        return y
    y = np.maximum(_bn(y, p["up_norm"]), 0)
    for block in p["up_res"].values():
        y = _res(y, block)
    return np.concatenate([x, y], axis=-1)


def _as_numpy(tree):
    if hasattr(tree, "items"):
        return {str(k): _as_numpy(v) for k, v in tree.items()}
    return np.asarray(tree, np.float64)


@pytest.mark.parametrize("num_downs", [2, 3])
def test_tiny_generator_forward_matches_numpy(num_downs):
    model = ResUnetGenerator(6, 3, num_downs=num_downs, ngf=3, rngs=nnx.Rngs(1))
    # Non-trivial BN affine parameters so that their placement matters.
    _, params, _ = split_model(model)
    keys = iter(jax.random.split(jax.random.key(2), 1000))
    params = jax.tree.map(lambda v: v + 0.3 * jax.random.normal(next(keys), v.shape), params)
    nnx.update(model, params)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 6)).astype(np.float32)
    got = np.asarray(nnx.jit(lambda m, v: m(v, train=True))(model, jnp.asarray(x)))  # one compile, not per op
    p = _as_numpy(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    want = np.tanh(_level(x.astype(np.float64), p["net"], True))
    assert got.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(got, want, atol=2e-4)
    # Inference uses the running statistics that training updated.
    assert np.all(np.abs(np.asarray(nnx.jit(lambda m, v: m(v, train=False))(model, jnp.asarray(x)))) <= 1.0)


def test_generator_input_checks():
    model = nnx.eval_shape(lambda: ResUnetGenerator(6, 3, num_downs=3, ngf=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="divisible"):
        model(jnp.zeros((1, 12, 12, 6)), train=False)
    with pytest.raises(ValueError, match="6\\)"):
        model(jnp.zeros((1, 16, 16, 3)), train=False)


def test_patchgan_patch_grid_and_features():
    d = PatchGAN(6, ndf=4, n_layers=3, norm="instance", rngs=nnx.Rngs(0))
    logits, feats = d(jnp.zeros((2, 64, 64, 6)))
    # 4x4 convs, pad 1: stride 2 halves, stride 1 shrinks by 1 (pix2pix's 70x70 PatchGAN: 256 -> 30).
    assert logits.shape == (2, 6, 6, 1) and logits.dtype == jnp.float32
    assert [f.shape[1:] for f in feats] == [(32, 32, 4), (16, 16, 8), (8, 8, 16), (7, 7, 32)]
    reference = jax.eval_shape(
        lambda x: PatchGAN(6, ndf=64, n_layers=3, rngs=nnx.Rngs(0))(x)[0], jax.ShapeDtypeStruct((1, 256, 256, 6), jnp.float32)
    )
    assert reference.shape == (1, 30, 30, 1)
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 3))
    mean, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(np.asarray(instance_norm(jnp.asarray(x, jnp.float32))), (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        PatchGAN(6, norm="batch", rngs=nnx.Rngs(0))


def test_phase_decomposed_upsample_conv_equals_conv_of_upsampled_image():
    from macl_jax.models.renderers.resunet import upsample_conv3x3

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 7, 3))
    k = rng.normal(size=(3, 3, 3, 4))
    want = _conv(x.repeat(2, axis=1).repeat(2, axis=2), k, 1)
    got = np.asarray(upsample_conv3x3(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)))
    np.testing.assert_allclose(got, want, atol=1e-4)
