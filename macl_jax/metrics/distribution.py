"""Gaussian statistics and the Fréchet distance between two of them (the core of FID).

Statistics are kept as sums (count, sum x, sum x x^T) so that shards of a test set evaluated on
different processes merge by addition; the mean and covariance are formed once at the end.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg


@dataclasses.dataclass
class GaussianStats:
    """Running sums of D-dimensional features, mergeable by `+`."""

    count: float
    total: np.ndarray  # (D,)
    outer: np.ndarray  # (D, D)

    @classmethod
    def zeros(cls, dim: int) -> GaussianStats:
        return cls(0.0, np.zeros(dim, np.float64), np.zeros((dim, dim), np.float64))

    @classmethod
    def from_features(cls, features: np.ndarray) -> GaussianStats:
        x = np.asarray(features, np.float64)
        return cls(float(len(x)), x.sum(0), x.T @ x)

    def __add__(self, other: GaussianStats) -> GaussianStats:
        return GaussianStats(self.count + other.count, self.total + other.total, self.outer + other.outer)

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and the unbiased (N-1) covariance, as numpy.cov computes it."""
        if self.count < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.count:g}")
        mean = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)), in float64.

    As in pytorch-fid: when the product is singular the covariances get `eps` on the diagonal,
    and a negligible imaginary part of the matrix square root (numerical) is dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(cov1)) * eps
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary part ({np.abs(covmean.imag).max():.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))
