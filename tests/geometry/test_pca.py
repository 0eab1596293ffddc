import io

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

from macl_jax.geometry import PCA, fit_pca


def _landmark_like(seed, n=300, d=136, rank=12):
    """Low-rank structure plus noise, so the leading components are well separated."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, d))
    scales = np.geomspace(10, 0.5, rank)
    return rng.normal(size=(n, rank)) * scales @ basis + 0.05 * rng.normal(size=(n, d)) + rng.normal(size=d) * 3


@pytest.mark.parametrize("whiten", [False, True])
def test_matches_sklearn(whiten):
    x = _landmark_like(0)
    ours = fit_pca(x, 10, whiten=whiten)
    ref = SkPCA(n_components=10, whiten=whiten, svd_solver="full").fit(x)
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(ours.mean, ref.mean_, atol=1e-12)
    signs = np.sign(np.sum(ours.components * ref.components_, axis=1))
    np.testing.assert_allclose(ours.components, ref.components_ * signs[:, None], atol=1e-9)
    np.testing.assert_allclose(ours.transform(x), ref.transform(x) * signs, atol=1e-8)
    codes = ours.transform(x[:7])
    np.testing.assert_allclose(ours.inverse_transform(codes), ref.inverse_transform(ref.transform(x[:7])), atol=1e-8)
    if whiten:
        np.testing.assert_allclose(ours.transform(x).std(axis=0, ddof=1), 1.0, rtol=1e-10)


def test_full_rank_reconstruction_is_exact():
    x = _landmark_like(1, n=50, d=20, rank=20)
    p = fit_pca(x, 20)
    np.testing.assert_allclose(p.inverse_transform(p.transform(x)), x, atol=1e-10)
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(20), atol=1e-12)


def test_sign_convention_is_deterministic():
    x = _landmark_like(2)
    base = fit_pca(x, 8)
    pivots = base.components[np.arange(8), np.argmax(np.abs(base.components), axis=1)]
    assert np.all(pivots > 0)
    perm = np.random.default_rng(3).permutation(len(x))
    for other in (fit_pca(x[perm], 8), fit_pca(-x, 8), fit_pca(x, 8)):
        np.testing.assert_allclose(other.components, base.components, atol=1e-10)
    np.testing.assert_array_equal(fit_pca(x, 8).components, base.components)


def test_dict_round_trip_through_npz():
    x = _landmark_like(4, n=80, d=30, rank=6)
    p = fit_pca(x, 5, whiten=True)
    buf = io.BytesIO()
    np.savez(buf, **p.to_dict())
    buf.seek(0)
    with np.load(buf) as f:
        q = PCA.from_dict(f)
    assert q.whiten is True and q.num_components == 5
    np.testing.assert_array_equal(q.transform(x), p.transform(x))
    with pytest.raises(ValueError, match="missing keys"):
        PCA.from_dict({"mean": p.mean})
    with pytest.raises(ValueError, match="components"):
        PCA(mean=np.zeros(3), components=np.zeros((2, 4)), explained_variance=np.ones(2), explained_variance_ratio=np.ones(2))


def test_dtypes_validation_and_jax():
    import jax
    import jax.numpy as jnp

    x = _landmark_like(5, n=60, d=16, rank=5)
    p = fit_pca(x, 4)
    x32 = x.astype(np.float32)
    assert p.transform(x32).dtype == np.float32
    got = jax.jit(p.transform)(jnp.asarray(x32))
    np.testing.assert_allclose(np.asarray(got), p.transform(x), rtol=1e-4, atol=1e-3)
    back = jax.jit(p.inverse_transform)(got)
    np.testing.assert_allclose(np.asarray(back), p.inverse_transform(p.transform(x)), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="num_components"):
        fit_pca(x, 17)
    with pytest.raises(ValueError, match="last axis"):
        p.transform(x[:, :10])
