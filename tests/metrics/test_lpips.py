"""LPIPS from features against a float64 numpy implementation of the formula."""

import numpy as np
import pytest

import jax

from macl_jax.metrics.lpips import lpips_from_features

SHAPES = [(3, 8, 8, 4), (3, 4, 4, 6), (3, 2, 2, 5)]  # three layers of different sizes


def _np_lpips(fx, fy, weights, eps=1e-10):
    total = 0.0
    for a, b, w in zip(fx, fy, weights):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        ua = a / (np.sqrt((a**2).sum(-1, keepdims=True)) + eps)
        ub = b / (np.sqrt((b**2).sum(-1, keepdims=True)) + eps)
        total = total + (((ua - ub) ** 2) @ np.asarray(w, np.float64)).mean(axis=(1, 2))
    return total


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    # Non-negative like ReLU activations, with one all-zero pixel (the eps path).
    fx = [np.abs(rng.normal(size=s)).astype(np.float32) for s in SHAPES]
    fy = [np.abs(rng.normal(size=s)).astype(np.float32) for s in SHAPES]
    fx[0][1, 2, 3] = 0.0
    weights = [rng.uniform(0.0, 1.0, size=s[-1]).astype(np.float32) for s in SHAPES]
    return fx, fy, weights


def test_equals_numpy_formula(features):
    fx, fy, weights = features
    got = np.asarray(jax.jit(lpips_from_features)(fx, fy, weights))
    assert got.shape == (3,) and got.dtype == np.float32
    np.testing.assert_allclose(got, _np_lpips(fx, fy, weights), rtol=1e-5)
    # Only the direction of a feature vector counts: scaling a layer's channels changes nothing.
    scaled = [fx[0] * 7.0, *fx[1:]]
    np.testing.assert_allclose(np.asarray(lpips_from_features(scaled, fy, weights)), got, rtol=1e-5)


def test_identical_features_are_zero(features):
    fx, _, weights = features
    np.testing.assert_array_equal(np.asarray(lpips_from_features(fx, fx, weights)), 0.0)


def test_mismatched_inputs(features):
    fx, fy, weights = features
    with pytest.raises(ValueError, match="one weight vector per layer"):
        lpips_from_features(fx, fy, weights[:2])
    with pytest.raises(ValueError, match="layer 1"):
        lpips_from_features(fx, [fy[0], fy[1][:, :2], fy[2]], weights)
