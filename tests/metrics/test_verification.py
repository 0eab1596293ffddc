import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

from macl_jax.metrics.verification import equal_error_rate, min_dcf, paired_speaker_bootstrap


def test_hand_computed_case():
    scores = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0, 0]
    # At threshold 0.7: one target below (0.3) and one non-target at or above (0.7): FRR = FAR = 1/3.
    assert equal_error_rate(scores, labels) == pytest.approx(1 / 3)
    assert equal_error_rate([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0


def test_gaussian_scores_match_theory_and_sklearn():
    rng = np.random.default_rng(0)
    targets, nontargets = rng.normal(1, 1, 20000), rng.normal(-1, 1, 20000)
    scores = np.concatenate([targets, nontargets])
    labels = np.concatenate([np.ones(20000), np.zeros(20000)])
    eer = equal_error_rate(scores, labels)
    assert eer == pytest.approx(norm.cdf(-1), abs=0.006)
    fpr, tpr, _ = roc_curve(labels, scores)  # independent implementation (voxceleb_trainer style)
    i = np.nanargmin(np.abs((1 - tpr) - fpr))
    assert eer == pytest.approx((fpr[i] + 1 - tpr[i]) / 2, abs=2e-4)


def test_min_dcf_against_brute_force():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(0.5, 1, 300), rng.normal(-0.5, 1, 700)])
    labels = np.concatenate([np.ones(300), np.zeros(700)])
    best = np.inf
    for t in np.concatenate([np.unique(scores), [np.inf]]):
        p_miss = np.mean(scores[labels == 1] < t)
        p_fa = np.mean(scores[labels == 0] >= t)
        best = min(best, (p_miss * 0.05 + p_fa * 0.95) / 0.05)
    assert min_dcf(scores, labels, p_target=0.05) == pytest.approx(best)


def test_needs_both_trial_kinds():
    with pytest.raises(ValueError, match="both target and non-target"):
        equal_error_rate([0.1, 0.2], [1, 1])


def _speaker_trials(num_speakers=10, per_pair=6, seed=0):
    rng = np.random.default_rng(seed)
    s1, s2 = [], []
    for a in range(num_speakers):
        for b in range(num_speakers):
            s1 += [a] * per_pair
            s2 += [b] * per_pair
    s1, s2 = np.array(s1), np.array(s2)
    return s1, s2, (s1 == s2).astype(int), rng


def test_paired_bootstrap_of_identical_systems_is_exactly_zero():
    s1, s2, labels, rng = _speaker_trials()
    scores = rng.normal(size=len(labels)) + labels
    out = paired_speaker_bootstrap(scores, scores, labels, s1, s2, replicates=50)
    assert out["diff_mean"] == 0 and out["diff_ci95_low"] == 0 and out["diff_ci95_high"] == 0
    assert out["share_a_not_worse"] == 1.0 and out["eer_a"] == out["eer_b"]


def test_paired_bootstrap_separates_a_clearly_better_system_and_not_a_tie():
    s1, s2, labels, rng = _speaker_trials()
    good = rng.normal(size=len(labels)) + 3.0 * labels
    poor = rng.normal(size=len(labels)) + 0.5 * labels
    out = paired_speaker_bootstrap(good, poor, labels, s1, s2, replicates=200)
    assert out["diff_ci95_high"] < 0 and out["share_a_not_worse"] == 1.0
    assert np.isclose(out["eer_a"], equal_error_rate(good, labels)) and np.isclose(out["eer_b"], equal_error_rate(poor, labels))
    # Same quality, other noise: the interval spans zero.
    mid, twin = (rng.normal(size=len(labels)) + 1.0 * labels for _ in range(2))
    tie = paired_speaker_bootstrap(mid, twin, labels, s1, s2, replicates=200)
    assert tie["diff_ci95_low"] < 0 < tie["diff_ci95_high"]
