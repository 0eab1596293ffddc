import numpy as np
import pytest

from macl_jax.metrics.distribution import GaussianStats, frechet_distance


def test_one_dimensional_closed_form():
    # (m1 - m2)^2 + v1 + v2 - 2 sqrt(v1 v2)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 4 + 9 - 2 * 6)


def test_against_eigenvalue_formula_and_identity():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(300, 5)) * 1.5 + 0.3
    mu1, c1, mu2, c2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    # Tr((C1 C2)^1/2) = sum of square roots of the (real, positive) eigenvalues of C1 C2.
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.sum(np.sqrt(np.linalg.eigvals(c1 @ c2).real))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-8)


def test_stats_merge_by_addition_like_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(101, 4))
    merged = GaussianStats.from_features(x[:40]) + GaussianStats.from_features(x[40:])
    mean, cov = merged.mean_cov()
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        GaussianStats.from_features(x[:1]).mean_cov()
