"""Cluster bootstrap over test speakers: how sure is a difference measured on a few speakers?

Clips (or trials) of one speaker are not independent, so a replicate draws the speakers with
replacement and keeps every clip of a drawn speaker as many times as it was drawn.
"""

from __future__ import annotations

import numpy as np


def cluster_draws(rng: np.random.Generator, num_clusters: int) -> np.ndarray:
    """(num_clusters,) how often each cluster is drawn in one replicate (sums to num_clusters)."""
    return np.bincount(rng.integers(0, num_clusters, num_clusters), minlength=num_clusters)


def paired_mean_difference(
    a: np.ndarray, b: np.ndarray, clusters: np.ndarray, *, replicates: int = 2000, seed: int = 0
) -> dict[str, float]:
    """mean(a) - mean(b) over paired per-item values (e.g. per-clip RD of a model and of a
    baseline), with a 95% interval from resampling `clusters` (e.g. speakers), and the share of
    replicates in which a's mean is below b's (lower is better)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape or np.size(clusters) != a.size:
        raise ValueError(f"a {a.shape}, b {b.shape} and clusters ({np.size(clusters)}) need one entry per item")
    if a.size == 0:
        raise ValueError("no items to compare")
    _, codes = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
    num = int(codes.max()) + 1
    diff_sum = np.bincount(codes, weights=a - b, minlength=num)
    count = np.bincount(codes, minlength=num).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = np.stack([cluster_draws(rng, num) for _ in range(int(replicates))])  # (R, clusters)
    diffs = (draws @ diff_sum) / (draws @ count)
    return {
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "diff_mean": float((a - b).mean()),
        "diff_ci95_low": float(np.percentile(diffs, 2.5)),
        "diff_ci95_high": float(np.percentile(diffs, 97.5)),
        "share_a_below": float((diffs < 0).mean()),
        "clusters": float(num),
        "replicates": float(replicates),
    }
