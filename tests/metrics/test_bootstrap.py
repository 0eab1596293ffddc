import numpy as np
import pytest

from macl_jax.metrics.bootstrap import cluster_draws, paired_mean_difference


def test_a_constant_shift_has_a_point_interval():
    rng = np.random.default_rng(0)
    b = rng.uniform(1, 3, 60)
    out = paired_mean_difference(b - 0.25, b, np.repeat(np.arange(6), 10), replicates=200)
    assert out["diff_mean"] == pytest.approx(-0.25)
    assert out["diff_ci95_low"] == pytest.approx(-0.25) and out["diff_ci95_high"] == pytest.approx(-0.25)
    assert out["share_a_below"] == 1.0 and out["clusters"] == 6


def test_matches_a_loop_over_replicates_with_repeated_clusters():
    rng = np.random.default_rng(1)
    clusters = rng.choice(np.array([3, 7, 11, 20, 42]), 37)  # unequal cluster sizes, arbitrary ids
    a, b = rng.normal(0, 1, 37), rng.normal(0.2, 1, 37)
    out = paired_mean_difference(a, b, clusters, replicates=300, seed=5)
    ids, codes = np.unique(clusters, return_inverse=True)
    loop_rng = np.random.default_rng(5)
    diffs = []
    for _ in range(300):
        draws = cluster_draws(loop_rng, len(ids))
        keep = np.repeat(np.arange(37), draws[codes])
        diffs.append(np.mean(a[keep] - b[keep]))
    assert out["diff_ci95_low"] == pytest.approx(np.percentile(diffs, 2.5))
    assert out["diff_ci95_high"] == pytest.approx(np.percentile(diffs, 97.5))
    assert out["share_a_below"] == pytest.approx(np.mean(np.asarray(diffs) < 0))


def test_one_speaker_carrying_the_difference_widens_the_interval():
    # Same per-clip differences, but in one case they all come from one of ten speakers.
    spread = np.repeat(np.arange(10), 10)
    d = np.zeros(100)
    d[:10] = -1.0
    together = paired_mean_difference(d, np.zeros(100), spread, replicates=1000)
    shuffled = paired_mean_difference(d, np.zeros(100), np.tile(np.arange(10), 10), replicates=1000)
    width = lambda o: o["diff_ci95_high"] - o["diff_ci95_low"]  # noqa: E731
    assert together["diff_mean"] == shuffled["diff_mean"] == pytest.approx(-0.1)
    assert width(together) > 3 * width(shuffled)
    with pytest.raises(ValueError, match="one entry per item"):
        paired_mean_difference(d, np.zeros(99), spread)
