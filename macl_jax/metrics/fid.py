"""FID: the Fréchet distance between the Gaussians of two feature sets, and their saved statistics.

The features are the FID Inception's pool3 outputs (macl_jax.models.inception: `features_fn`,
`InceptionFeatures`, with the protocol to state next to any number); everything here is a pure
function of feature arrays or their statistics. Unbiased (N-1) covariances.

Statistics are `GaussianStats` sums (macl_jax.metrics.distribution), so the GAUSSIAN reduction of
macl_jax.evals.sharded merges them across batches and processes: an evaluator returns the
features as a GAUSSIAN output and calls `fid_from_gaussian_stats` in `finalize`.

The matrix square root: `frechet_distance` (scipy.linalg.sqrtm, the pytorch-fid reference) takes
minutes at D = 2048 on a 2-core CPU, so `fid_from_stats` defaults to an equivalent symmetric
eigendecomposition, tr sqrt(C1 C2) = sum sqrt(eig(C1^1/2 C2 C1^1/2)), and `fid_from_features`
uses the exact small-sample form tr sqrt(C1 C2) = nuclear norm of B1 B2^T (B = centred features /
sqrt(N - 1)) when both sets have fewer than D rows.
"""

from __future__ import annotations

import math

import numpy as np

from macl_jax.metrics.distribution import GaussianStats, frechet_distance


def _trace_sqrt_product_eigh(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """tr sqrt(cov1 cov2) for symmetric PSD covariances, via two symmetric eigendecompositions."""
    w, v = np.linalg.eigh(cov1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)  # symmetrise away rounding
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def fid_from_stats(a: GaussianStats, b: GaussianStats, *, method: str = "eigh") -> float:
    """FID between two feature Gaussians. `method`: "eigh" (fast, default) or "sqrtm" (pytorch-fid's)."""
    mu1, cov1 = a.mean_cov()
    mu2, cov2 = b.mean_cov()
    if method == "sqrtm":
        return frechet_distance(mu1, cov1, mu2, cov2)
    if method != "eigh":
        raise ValueError(f"fid_from_stats: method must be 'eigh' or 'sqrtm', got {method!r}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * _trace_sqrt_product_eigh(cov1, cov2))


def _range_factor(cov: np.ndarray, rank: int, seed: int = 0) -> np.ndarray:
    """B (D, rank) with B B^T = cov for a PSD `cov` of rank <= `rank`, via a randomized range finder.

    Exact in exact arithmetic (the range of cov @ Omega is the range of cov); the fixed seed keeps
    it deterministic. Truncating to the top `rank` eigenvalues of the projected matrix discards the
    float32-summation noise outside the range instead of adding its square roots.
    """
    d = cov.shape[0]
    k = min(d, rank + 10)
    omega = np.random.default_rng(seed).standard_normal((d, k))
    q, _ = np.linalg.qr(cov @ omega)
    m = q.T @ cov @ q
    w, v = np.linalg.eigh((m + m.T) / 2)
    w, v = w[::-1][:rank], v[:, ::-1][:, :rank]
    return (q @ v) * np.sqrt(np.clip(w, 0.0, None))


def fid_from_gaussian_stats(a: GaussianStats, b: GaussianStats) -> float:
    """FID of two merged feature statistics; NaN with fewer than 2 examples on either side.

    With N >= D examples this is `fid_from_stats`. Below that (every held-out
    set of a few hundred frames) each covariance has rank <= N - 1, and tr sqrt(C1 C2) is the nuclear
    norm of B1^T B2 for rank-(N - 1) factors C = B B^T: the same number as the D x D
    eigendecompositions (which take tens of seconds at D = 2048 on a small CPU) in milliseconds.
    """
    if min(a.count, b.count) < 2:
        return math.nan
    d = a.total.shape[0]
    if max(a.count, b.count) >= d:
        return fid_from_stats(a, b)
    mu1, cov1 = a.mean_cov()
    mu2, cov2 = b.mean_cov()
    b1, b2 = _range_factor(cov1, int(a.count) - 1), _range_factor(cov2, int(b.count) - 1)
    diff = mu1 - mu2
    tr_sqrt = np.linalg.svd(b1.T @ b2, compute_uv=False).sum()
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (N_a, D), (N_b, D); exact and fast when N < D (see module doc)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"fid_from_features: need (N, D) feature sets of equal D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError(f"fid_from_features: need at least 2 feature vectors per set, got {len(a)} and {len(b)}")
    if max(len(a), len(b)) >= a.shape[1]:
        return fid_from_stats(GaussianStats.from_features(a), GaussianStats.from_features(b))
    ba = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    bb = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    diff = a.mean(0) - b.mean(0)
    tr_sqrt = np.linalg.svd(ba @ bb.T, compute_uv=False).sum()
    return float(diff @ diff + (ba * ba).sum() + (bb * bb).sum() - 2 * tr_sqrt)


def save_stats(path: str, stats: GaussianStats) -> None:
    """Reference-set statistics (sums, mergeable) to an .npz."""
    np.savez(path, count=np.float64(stats.count), total=stats.total, outer=stats.outer)


def load_stats(path: str) -> GaussianStats:
    try:
        with np.load(path) as z:
            return GaussianStats(float(z["count"]), np.asarray(z["total"], np.float64), np.asarray(z["outer"], np.float64))
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not FID statistics written by save_stats (keys count, total, outer): {e}") from e
