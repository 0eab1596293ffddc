"""Spectral normalisation: the estimate converges to the top singular value, eval leaves state
alone, the raw weight stays the parameter, and the layers match plain convolutions of W / sigma."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from macl_jax.models.spectral import SNConv, SNLinear, spectral_normalize


def test_power_iteration_finds_the_top_singular_value():
    w = jax.random.normal(jax.random.key(0), (3, 3, 8, 16))
    u = jax.random.normal(jax.random.key(1), (16,))
    for _ in range(30):
        _, u, sigma = spectral_normalize(w, u)
    top = np.linalg.svd(np.asarray(w).reshape(-1, 16), compute_uv=False)[0]
    np.testing.assert_allclose(float(sigma), top, rtol=1e-4)
    w_sn, _, _ = spectral_normalize(w, u)
    np.testing.assert_allclose(np.linalg.svd(np.asarray(w_sn).reshape(-1, 16), compute_uv=False)[0], 1.0, rtol=1e-4)


def test_gradient_goes_through_sigma_with_u_and_v_constant():
    w = jax.random.normal(jax.random.key(2), (6, 4))
    u = jax.random.normal(jax.random.key(3), (4,))
    x = jax.random.normal(jax.random.key(4), (6,))

    def ours(w):
        return jnp.sum(x @ spectral_normalize(w, u, n_steps=1)[0])

    def independent(w):  # the same power step written out, u and v frozen
        v0 = w @ u / jnp.linalg.norm(w @ u)
        u1 = jax.lax.stop_gradient(w.T @ v0 / jnp.linalg.norm(w.T @ v0))
        v1 = jax.lax.stop_gradient(w @ u1 / jnp.linalg.norm(w @ u1))
        return jnp.sum(x @ (w / (v1 @ w @ u1)))

    np.testing.assert_allclose(jax.grad(ours)(w), jax.grad(independent)(w), rtol=1e-5, atol=1e-6)


def test_conv_uses_the_normalised_kernel_and_eval_keeps_u():
    conv = SNConv(3, 5, 3, strides=2, padding=1, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(5), (2, 9, 9, 3))
    u_before = np.asarray(conv.u[...])
    y = conv(x)  # training: one power step, u written back
    assert not np.allclose(np.asarray(conv.u[...]), u_before)
    w_sn, _, _ = spectral_normalize(conv.kernel[...], jnp.asarray(u_before), n_steps=1)
    expected = jax.lax.conv_general_dilated(x, w_sn, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(y, expected + conv.bias[...], rtol=1e-5, atol=1e-6)
    assert y.shape == (2, 5, 5, 5)

    conv.eval()
    u_eval = np.asarray(conv.u[...])
    kernel = np.asarray(conv.kernel[...])
    conv(x)
    np.testing.assert_array_equal(np.asarray(conv.u[...]), u_eval)
    np.testing.assert_array_equal(np.asarray(conv.kernel[...]), kernel)  # the raw weight is the parameter


def test_linear_is_a_trainable_reparameterisation():
    lin = SNLinear(4, 3, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(6), (5, 4))
    params = nnx.state(lin, nnx.Param)
    assert set(dict(nnx.to_flat_state(params)).keys()) == {("kernel",), ("bias",)}

    def loss(model):
        return jnp.mean(model(x) ** 2)

    grads = nnx.grad(loss)(lin)
    assert np.abs(np.asarray(grads.kernel[...])).sum() > 0
