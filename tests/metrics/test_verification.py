import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

from macl_jax.metrics.verification import equal_error_rate, min_dcf


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
