"""Regression losses: the wing loss against its closed form."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.losses.regression import mean_squared_error, wing, wing_constant, wing_loss


def test_wing_constant_is_the_published_value_for_w10_eps2():
    # C = 10 - 10 ln 6
    assert wing_constant(10.0, 2.0) == pytest.approx(-7.917594692280550, abs=1e-12)


@pytest.mark.parametrize("w, eps", [(10.0, 2.0), (5.0, 0.5), (1.0, 3.0)])
def test_wing_is_continuous_at_w_and_matches_the_closed_form(w, eps):
    c = w - w * math.log(1 + w / eps)
    x = np.array([-3 * w, -w, -0.5 * w, -1e-3, 0.0, 1e-3, 0.25 * w, 0.999999 * w, w, 1.000001 * w, 4 * w], np.float64)
    want = np.where(np.abs(x) < w, w * np.log(1 + np.abs(x) / eps), np.abs(x) - c)
    got = np.asarray(wing(jnp.asarray(x, jnp.float32), w, eps))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    # Both pieces meet at |x| = w (w ln(1 + w / eps) = w - C), from either side.
    below, at, above = (float(wing(jnp.float32(v), w, eps)) for v in (w * (1 - 1e-6), w, w * (1 + 1e-6)))
    assert abs(below - at) < 1e-4 * w and abs(above - at) < 1e-4 * w


def test_wing_slope_is_w_over_eps_near_zero_and_one_beyond_w():
    g = jax.vmap(jax.grad(lambda x: wing(x, 10.0, 2.0)))(jnp.array([1e-4, 5.0, 20.0, -20.0]))
    np.testing.assert_allclose(np.asarray(g), [10 / (2 + 1e-4), 10 / 7, 1.0, -1.0], rtol=1e-5)


def test_wing_loss_is_the_mean_over_coordinates_and_differs_from_l2():
    pred = jnp.array([[0.0, 1.0], [12.0, -3.0]])
    target = jnp.zeros((2, 2))
    per = np.asarray(wing(pred - target))
    assert float(wing_loss(pred, target)) == pytest.approx(per.mean(), rel=1e-6)
    # The 1 px error's share of the loss is far larger than under L2 (1 / 154), where the 12 px outlier dominates.
    assert per[0, 1] / per.sum() > 5 * (1.0 / (1 + 144 + 9))
    assert float(mean_squared_error(pred, target)) == pytest.approx((1 + 144 + 9) / 4)


def test_wing_refuses_non_positive_parameters():
    with pytest.raises(ValueError, match="positive"):
        wing(jnp.ones(3), w=0.0)
