"""Pixel, perceptual, style and GAN losses against numpy statements of their formulas."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from macl_jax.losses.gan import (
    d_loss,
    feature_matching_loss,
    g_loss,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from macl_jax.losses.image import l1_loss
from macl_jax.losses.perceptual import gram_matrix, perceptual_and_style, perceptual_l1, style_loss

RNG = np.random.default_rng(0)
LAYERS = ("a", "b")
WEIGHTS = (0.5, 2.0)


def _features(batch=3):
    return {"a": RNG.normal(size=(batch, 6, 5, 4)).astype(np.float32), "b": RNG.normal(size=(batch, 3, 2, 7)).astype(np.float32)}


def test_l1_loss():
    x, y = RNG.normal(size=(2, 4, 4, 3)), RNG.normal(size=(2, 4, 4, 3))
    assert float(l1_loss(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(np.abs(x - y).mean(), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        l1_loss(jnp.zeros((2, 3)), jnp.zeros((3, 2)))


def test_perceptual_l1_and_style_match_numpy():
    fx, fy = _features(), _features()
    want_p = sum(w * np.abs(fx[n] - fy[n]).mean() for n, w in zip(LAYERS, WEIGHTS))
    assert float(perceptual_l1(fx, fy, LAYERS, WEIGHTS)) == pytest.approx(want_p, rel=1e-5)

    def gram(f):  # per sample: F^T F / (C H W) with F (H W, C)
        b, h, w, c = f.shape
        m = f.reshape(b, h * w, c).astype(np.float64)
        return np.stack([s.T @ s for s in m]) / (c * h * w)

    np.testing.assert_allclose(np.asarray(gram_matrix(jnp.asarray(fx["a"]))), gram(fx["a"]), rtol=1e-5, atol=1e-7)
    want_s = sum(w * np.mean((gram(fx[n]) - gram(fy[n])) ** 2) for n, w in zip(LAYERS, WEIGHTS))
    assert float(style_loss(fx, fy, LAYERS, WEIGHTS)) == pytest.approx(want_s, rel=1e-4)
    with pytest.raises(ValueError, match="lack layer"):
        perceptual_l1(fx, fy, ("a", "zzz"), WEIGHTS)
    with pytest.raises(ValueError, match="weights"):
        style_loss(fx, fy, LAYERS, (1.0,))


def test_per_sample_gram_does_not_mix_the_batch():
    f = _features(batch=2)["a"]
    alone = np.asarray(gram_matrix(jnp.asarray(f[:1])))
    together = np.asarray(gram_matrix(jnp.asarray(f)))
    np.testing.assert_allclose(together[:1], alone, rtol=1e-6)


class _TinyNet:
    """A stand-in feature network: two fixed random 1x1 'layers' (the loss must treat it as a black box)."""

    def __init__(self):
        self.w1 = jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32)
        self.w2 = jnp.asarray(RNG.normal(size=(4, 5)), jnp.float32)

    def __call__(self, images, layers):
        a = jax.nn.relu(images @ self.w1)
        b = jax.nn.relu(a[:, ::2, ::2] @ self.w2)
        return {k: v for k, v in {"a": a, "b": b}.items() if k in layers}


def test_perceptual_and_style_through_a_network_and_gradient_only_to_the_prediction():
    net = _TinyNet()
    x = jnp.asarray(RNG.uniform(size=(2, 8, 8, 3)), jnp.float32)
    y = jnp.asarray(RNG.uniform(size=(2, 8, 8, 3)), jnp.float32)
    p, s = perceptual_and_style(net, x, y, LAYERS, WEIGHTS, with_style=True)
    fx, fy = net(x, LAYERS), net(y, LAYERS)
    assert float(p) == pytest.approx(float(perceptual_l1(fx, fy, LAYERS, WEIGHTS)), rel=1e-5)
    assert float(s) == pytest.approx(float(style_loss(fx, fy, LAYERS, WEIGHTS)), rel=1e-4)
    grad_y = jax.grad(lambda t: sum(perceptual_and_style(net, x, t, LAYERS, WEIGHTS, with_style=True)))(y)
    grad_x = jax.grad(lambda t: sum(perceptual_and_style(net, t, y, LAYERS, WEIGHTS, with_style=True)))(x)
    assert float(jnp.abs(grad_y).max()) == 0.0  # targets are constants, as the reference detached them
    assert float(jnp.abs(grad_x).max()) > 0.0


def test_gan_losses_match_numpy():
    real, fake = RNG.normal(size=(4, 3, 3, 1)), RNG.normal(size=(4, 3, 3, 1))
    r, f = jnp.asarray(real), jnp.asarray(fake)
    assert float(hinge_d_loss(r, f)) == pytest.approx(np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean(), rel=1e-5)
    assert float(hinge_g_loss(f)) == pytest.approx(-fake.mean(), rel=1e-5)
    assert float(lsgan_d_loss(r, f)) == pytest.approx(0.5 * (((real - 1) ** 2).mean() + (fake**2).mean()), rel=1e-5)
    assert float(lsgan_g_loss(f)) == pytest.approx(((fake - 1) ** 2).mean(), rel=1e-5)
    assert float(d_loss("hinge", r, f)) == float(hinge_d_loss(r, f))
    assert float(g_loss("lsgan", f)) == float(lsgan_g_loss(f))
    with pytest.raises(ValueError, match="hinge"):
        d_loss("wgan", r, f)


def test_feature_matching_matches_numpy_and_holds_real_features_constant():
    fake = [RNG.normal(size=(2, 4, 4, 3)), RNG.normal(size=(2, 2, 2, 5))]
    real = [RNG.normal(size=(2, 4, 4, 3)), RNG.normal(size=(2, 2, 2, 5))]
    want = np.mean([np.abs(a - b).mean() for a, b in zip(fake, real)])
    got = feature_matching_loss([jnp.asarray(a) for a in fake], [jnp.asarray(b) for b in real])
    assert float(got) == pytest.approx(want, rel=1e-5)
    g = jax.grad(lambda r: feature_matching_loss([jnp.asarray(a) for a in fake], [r, jnp.asarray(real[1])]))(jnp.asarray(real[0]))
    assert float(jnp.abs(g).max()) == 0.0
    with pytest.raises(ValueError, match="layers"):
        feature_matching_loss([], [])
