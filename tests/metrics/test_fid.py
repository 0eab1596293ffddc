"""FID from features and statistics against scipy's sqrtm reference; statistics merge, save and load."""

import numpy as np
import pytest

from macl_jax.metrics.distribution import GaussianStats, frechet_distance
from macl_jax.metrics.fid import fid_from_features, fid_from_gaussian_stats, fid_from_stats, load_stats, save_stats


def test_fid_forms_agree_with_sqrtm_reference(tmp_path):
    rng = np.random.default_rng(0)
    d = 24
    mix = rng.normal(size=(d, d))
    for n_a, n_b in [(6, 9), (40, 60)]:
        a = rng.normal(size=(n_a, d)) @ mix
        b = rng.normal(size=(n_b, d)) @ mix * 1.3 + 0.5
        sa, sb = GaussianStats.from_features(a), GaussianStats.from_features(b)
        ref = frechet_distance(*sa.mean_cov(), *sb.mean_cov())
        assert fid_from_features(a, b) == pytest.approx(ref, rel=1e-6)
        assert fid_from_stats(sa, sb) == pytest.approx(ref, rel=1e-6)
        assert fid_from_stats(sa, sb, method="sqrtm") == pytest.approx(ref, rel=1e-12)
        # Stats merge by addition and survive a save/load.
        merged = GaussianStats.from_features(a[:3]) + GaussianStats.from_features(a[3:])
        save_stats(str(tmp_path / "ref.npz"), merged)
        assert fid_from_stats(load_stats(str(tmp_path / "ref.npz")), sb) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="not FID statistics"):
        np.savez(tmp_path / "bad.npz", mu=np.zeros(3))
        load_stats(str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("n_a, n_b", [(5, 9), (30, 40), (70, 90)])  # D = 64: low rank, low rank, full rank
def test_fid_from_merged_stats_equals_scipy_sqrtm(n_a, n_b):
    rng = np.random.default_rng(n_a)
    scale = rng.uniform(0.1, 2.0, 64)
    a, b = np.abs(rng.normal(size=(n_a, 64))) * scale, np.abs(rng.normal(0.3, 1.0, size=(n_b, 64))) * scale
    # Statistics merged from uneven shards, as the GAUSSIAN reduction produces them.
    merged = lambda x: GaussianStats.from_features(x[:3]) + GaussianStats.from_features(x[3:])  # noqa: E731
    got = fid_from_gaussian_stats(merged(a), merged(b))
    expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert got == pytest.approx(expected, rel=1e-6)
    assert got == pytest.approx(fid_from_features(a, b), rel=1e-8)
    assert np.isnan(fid_from_gaussian_stats(GaussianStats.from_features(a[:1]), merged(b)))
