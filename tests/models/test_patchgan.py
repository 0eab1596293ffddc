"""PatchGAN options (spectral norm, padding 2), the multi-scale wrapper and the RHM preset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.models.renderers import MultiscalePatchGAN, PatchGAN, rhm_discriminator
from macl_jax.models.renderers.patchgan import RHM_INIT, avg_pool_3x3_s2, instance_norm
from macl_jax.models.spectral import SNConv


def _conv(x, k, stride, pad):
    """numpy NHWC x HWIO cross-correlation with symmetric zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = k.shape[:2]
    ho, wo = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, k.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, k)
    return out


def _instance_norm(x):
    return (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-5)


def test_spectral_norm_padding_2_forward_matches_numpy_in_eval():
    d = PatchGAN(3, ndf=2, n_layers=2, spectral_norm=True, padding=2, rngs=nnx.Rngs(0))
    assert not isinstance(d.convs[0], SNConv) and all(isinstance(c, SNConv) for c in d.convs[1:])
    d.eval()  # u as stored: W / sigma with sigma = |W u| (the power step's v = W u / |W u|)
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 3))
    logits, feats = d(jnp.asarray(x, jnp.float32))
    h = x
    want_feats = []
    for i, conv in enumerate(d.convs):
        k = np.asarray(conv.kernel[...], np.float64)
        if i > 0:
            u = np.asarray(conv.u[...], np.float64)
            k = k / np.linalg.norm(k.reshape(-1, k.shape[-1]) @ u)
        h = _conv(h, k, 2 if i < 2 else 1, 2)
        if conv.bias is not None:
            h = h + np.asarray(conv.bias[...])
        if i > 0:
            h = _instance_norm(h)
        h = np.where(h > 0, h, 0.2 * h)
        want_feats.append(h)
    want = _conv(h, np.asarray(d.head.kernel[...]), 1, 2) + np.asarray(d.head.bias[...])
    # Padding 2 with 4x4 kernels: stride 2 maps n -> n // 2 + 1, stride 1 grows by 1.
    assert [f.shape[1:3] for f in feats] == [(7, 7), (4, 4), (5, 5)] and logits.shape == (2, 6, 6, 1)
    for got, w in zip(feats, want_feats):
        np.testing.assert_allclose(np.asarray(got), w, atol=2e-4)
    np.testing.assert_allclose(np.asarray(logits), want, atol=2e-4)


def test_avg_pool_excludes_padding_from_the_count():
    x = np.random.default_rng(1).normal(size=(2, 5, 6, 3))
    got = np.asarray(avg_pool_3x3_s2(jnp.asarray(x, jnp.float32)))
    assert got.shape == (2, 3, 3, 3)
    for i in range(3):
        for j in range(3):
            rows = slice(max(2 * i - 1, 0), min(2 * i + 2, 5))
            cols = slice(max(2 * j - 1, 0), min(2 * j + 2, 6))
            np.testing.assert_allclose(got[:, i, j], x[:, rows, cols].mean(axis=(1, 2)), atol=1e-6)


def test_multiscale_runs_each_scale_on_a_further_pooled_input():
    d = MultiscalePatchGAN(4, num_d=3, ndf=2, n_layers=2, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 32, 32, 4)), jnp.float32)
    outs = d(x)
    assert len(outs) == 3
    pooled = x
    for s, (logits, feats) in enumerate(outs):
        want_logits, want_feats = d.scales[s](pooled)
        np.testing.assert_allclose(np.asarray(logits), np.asarray(want_logits), atol=1e-6)
        assert len(feats) == 3
        pooled = avg_pool_3x3_s2(pooled)
    # The scales do not share weights.
    assert not np.allclose(np.asarray(d.scales[0].head.kernel[...]), np.asarray(d.scales[1].head.kernel[...]))
    with pytest.raises(ValueError, match="num_d"):
        MultiscalePatchGAN(4, num_d=0, rngs=nnx.Rngs(0))


def test_rhm_preset_sizes_and_init():
    outs = jax.eval_shape(lambda x: rhm_discriminator(rngs=nnx.Rngs(0))(x), jax.ShapeDtypeStruct((1, 256, 256, 8), jnp.float32))
    # The authors' single scale at 256 px: 129, 65, 33, 17, 18 (features), 19 (logits); 2 scales by default.
    assert len(outs) == 2
    (logits, feats), (logits2, feats2) = outs
    assert [f.shape[1] for f in feats] == [129, 65, 33, 17, 18] and logits.shape == (1, 19, 19, 1)
    assert [f.shape[-1] for f in feats] == [32, 64, 128, 256, 256]
    assert [f.shape[1] for f in feats2] == [65, 33, 17, 9, 10] and logits2.shape == (1, 11, 11, 1)
    assert len(rhm_discriminator(num_d=1, rngs=nnx.Rngs(0)).scales) == 1
    # xavier normal with gain 0.02: std = 0.02 sqrt(2 / (fan_in + fan_out)), untruncated.
    k = np.asarray(RHM_INIT(jax.random.key(0), (4, 4, 256, 512), jnp.float32))
    want_std = 0.02 * np.sqrt(2.0 / (16 * 256 + 16 * 512))
    assert k.std() == pytest.approx(want_std, rel=0.01)
    assert np.abs(k).max() > 2.5 * want_std  # not truncated at 2 std


def test_defaults_are_unchanged_pix2pix():
    d = PatchGAN(6, ndf=4, n_layers=3, rngs=nnx.Rngs(0))
    assert not any(isinstance(c, SNConv) for c in d.convs)
    logits, _ = d(jnp.zeros((1, 64, 64, 6)))
    assert logits.shape == (1, 6, 6, 1)
    x = np.random.default_rng(3).normal(size=(1, 4, 4, 2))
    np.testing.assert_allclose(np.asarray(instance_norm(jnp.asarray(x, jnp.float32))), _instance_norm(x), atol=1e-5)
