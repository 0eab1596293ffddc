"""Verification metrics over pooled trial scores: EER and minDCF (VoxCeleb conventions).

Labels are 1 for target (same speaker) trials and 0 for non-target ones; higher scores mean
"more likely the same". FAR(t) = share of non-targets with score >= t, FRR(t) = share of targets
with score < t.
"""

from __future__ import annotations

import numpy as np

from macl_jax.metrics.bootstrap import cluster_draws


def _error_rates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAR and FRR at every distinct threshold (plus one above all scores), ascending thresholds."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in length")
    n_target, n_nontarget = labels.sum(), (~labels).sum()
    if n_target == 0 or n_nontarget == 0:
        raise ValueError(f"need both target and non-target trials, got {n_target} and {n_nontarget}")
    order = np.argsort(scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    thresholds = np.concatenate([np.unique(s), [np.inf]])
    # Number of trials strictly below each threshold.
    below = np.searchsorted(s, thresholds, side="left")
    targets_below = np.concatenate([[0], np.cumsum(lab)])[below]
    nontargets_below = below - targets_below
    frr = targets_below / n_target
    far = (n_nontarget - nontargets_below) / n_nontarget
    return thresholds, far, frr


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER as a fraction, interpolating linearly where FAR and FRR cross."""
    _, far, frr = _error_rates(scores, labels)
    diff = far - frr  # decreasing from >= 0 to <= 0 as the threshold rises
    i = int(np.argmax(diff <= 0))
    if i == 0 or diff[i] == 0:
        return float((far[i] + frr[i]) / 2)
    # Linear interpolation between thresholds i-1 and i, on which the sign changes.
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(far[i - 1] + w * (far[i] - far[i - 1]))


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost: min_t [C_miss P_miss P_tar + C_fa P_fa (1 - P_tar)] / C_default."""
    _, far, frr = _error_rates(scores, labels)
    cost = c_miss * frr * p_target + c_fa * far * (1 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def paired_speaker_bootstrap(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    labels: np.ndarray,
    speaker_1: np.ndarray,
    speaker_2: np.ndarray,
    *,
    replicates: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """How sure is EER(a) < EER(b)? Two systems scored on the same trials, resampled by speaker.

    Trials share speakers, so they are not independent: each replicate draws the test speakers
    with replacement, and a trial between speakers drawn c1 and c2 times enters c1 * c2 times
    (a cluster bootstrap). Returns the EER of each system on all trials, the mean and 95%
    interval of EER(a) - EER(b) over replicates, and the share of replicates with a <= b.
    """
    labels = np.asarray(labels).ravel().astype(bool)
    names, codes = np.unique(np.concatenate([np.asarray(speaker_1), np.asarray(speaker_2)]), return_inverse=True)
    c1, c2 = codes[: len(labels)], codes[len(labels) :]
    if len(c1) != len(labels) or np.shape(scores_a) != np.shape(scores_b) or np.size(scores_a) != len(labels):
        raise ValueError("scores_a, scores_b, labels, speaker_1 and speaker_2 must all have one entry per trial")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(int(replicates)):
        counts = cluster_draws(rng, len(names))
        keep = np.repeat(np.arange(len(labels)), counts[c1] * counts[c2])
        if not keep.size or labels[keep].all() or not labels[keep].any():
            continue  # a draw without both trial kinds has no EER
        diffs.append(equal_error_rate(np.asarray(scores_a)[keep], labels[keep]) - equal_error_rate(np.asarray(scores_b)[keep], labels[keep]))
    d = np.asarray(diffs)
    return {
        "eer_a": equal_error_rate(scores_a, labels),
        "eer_b": equal_error_rate(scores_b, labels),
        "diff_mean": float(d.mean()),
        "diff_ci95_low": float(np.percentile(d, 2.5)),
        "diff_ci95_high": float(np.percentile(d, 97.5)),
        "share_a_not_worse": float((d <= 0).mean()),
        "replicates": float(len(d)),
    }
