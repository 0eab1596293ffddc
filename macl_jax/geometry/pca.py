"""Principal component analysis of flattened landmarks (e.g. the 20-component frontal PCA).

Fitting is numpy (float64 SVD). `transform` / `inverse_transform` also take jax arrays, so a
fitted basis can be applied on device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from macl_jax.geometry._backend import namespace, to_compute


@dataclasses.dataclass(frozen=True, eq=False)
class PCA:
    """A fitted basis: coefficients c = (x - mean) @ components.T (/ sqrt(variance) if whiten).

    mean (D,), components (K, D) with orthonormal rows, explained_variance (K,) (unbiased,
    N - 1 denominator, as sklearn), explained_variance_ratio (K,) of the total variance.
    Each component's largest-magnitude entry is positive, so fits of the same data agree
    regardless of LAPACK's sign choices.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    whiten: bool = False

    def __post_init__(self) -> None:
        k, d = np.shape(self.components) if np.ndim(self.components) == 2 else (None, None)
        if k is None or np.shape(self.mean) != (d,) or np.shape(self.explained_variance) != (k,) or np.shape(
            self.explained_variance_ratio
        ) != (k,):
            raise ValueError(
                "PCA: expected mean (D,), components (K, D), explained_variance (K,), explained_variance_ratio (K,); got "
                f"{np.shape(self.mean)}, {np.shape(self.components)}, {np.shape(self.explained_variance)}, "
                f"{np.shape(self.explained_variance_ratio)}."
            )

    @property
    def num_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: Any) -> Any:
        """(..., D) -> (..., K) coefficients."""
        xp = namespace(x)
        v, out = to_compute(x, xp)
        self._check_last(v, self.components.shape[1], "transform(x)")
        c = (v - xp.asarray(self.mean, dtype=v.dtype)) @ xp.asarray(self.components, dtype=v.dtype).T
        if self.whiten:
            c = c / xp.sqrt(xp.asarray(self.explained_variance, dtype=v.dtype))
        return c.astype(out)

    def inverse_transform(self, coefficients: Any) -> Any:
        """(..., K) -> (..., D) reconstruction: c @ components + mean (c * sqrt(variance) if whiten)."""
        xp = namespace(coefficients)
        c, out = to_compute(coefficients, xp)
        self._check_last(c, self.num_components, "inverse_transform(coefficients)")
        if self.whiten:
            c = c * xp.sqrt(xp.asarray(self.explained_variance, dtype=c.dtype))
        return (c @ xp.asarray(self.components, dtype=c.dtype) + xp.asarray(self.mean, dtype=c.dtype)).astype(out)

    def to_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (whiten as a 0-d bool) for np.savez, dataset metadata or a checkpoint."""
        return {
            "mean": np.asarray(self.mean),
            "components": np.asarray(self.components),
            "explained_variance": np.asarray(self.explained_variance),
            "explained_variance_ratio": np.asarray(self.explained_variance_ratio),
            "whiten": np.asarray(bool(self.whiten)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PCA":
        """Inverse of `to_dict` (accepts an NpzFile or a restored checkpoint subtree)."""
        missing = {"mean", "components", "explained_variance", "explained_variance_ratio"} - set(d.keys())
        if missing:
            raise ValueError(f"PCA.from_dict: missing keys {sorted(missing)}; expected the output of PCA.to_dict().")
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            components=np.asarray(d["components"], dtype=np.float64),
            explained_variance=np.asarray(d["explained_variance"], dtype=np.float64),
            explained_variance_ratio=np.asarray(d["explained_variance_ratio"], dtype=np.float64),
            whiten=bool(np.asarray(d.get("whiten", False))),
        )

    @staticmethod
    def _check_last(x: Any, size: int, name: str) -> None:
        if x.ndim < 1 or x.shape[-1] != size:
            raise ValueError(f"PCA.{name}: expected last axis of size {size}, got shape {tuple(x.shape)}.")


def fit_pca(x: np.ndarray, num_components: int, whiten: bool = False) -> PCA:
    """Fits the top `num_components` principal directions of rows x (N, D) by SVD in float64.

    Same basis and variances as sklearn.decomposition.PCA(num_components, whiten=whiten) (full
    SVD solver), up to the deterministic sign convention described on `PCA`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"fit_pca(x): expected (N, D) samples with N >= 2, got shape {x.shape}; flatten landmarks to (N, 136).")
    n, d = x.shape
    if not isinstance(num_components, (int, np.integer)) or not 1 <= num_components <= min(n, d):
        raise ValueError(f"fit_pca(num_components): expected an int in [1, min(N, D) = {min(n, d)}], got {num_components!r}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("fit_pca(x): contains NaN or Inf; fill or drop missing frames first (see interpolate_gaps).")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:num_components]
    # Sign convention: flip each row so its largest-|.| entry is positive (first one on ties).
    pivot = comps[np.arange(num_components), np.argmax(np.abs(comps), axis=1)]
    comps = comps * np.where(pivot < 0, -1.0, 1.0)[:, None]
    var = s**2 / (n - 1)
    total = var.sum()
    ratio = var[:num_components] / total if total > 0 else np.zeros(num_components)
    return PCA(
        mean=mean,
        components=comps,
        explained_variance=var[:num_components],
        explained_variance_ratio=ratio,
        whiten=bool(whiten),
    )
