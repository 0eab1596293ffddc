"""Inputs x ~ N(0, I); targets y = tanh(x A) B + noise, with A, B fixed by the seed.

The mapping is non-linear, so a model has to learn something real, and the best achievable
mean squared error (the noise variance) is known, which makes learning checks meaningful.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RegressionSource:
    """Random-access source of `{"x": float32[d_in], "y": float32[d_out]}` examples."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"x": self.x[index], "y": self.y[index]}


def make_splits(
    num_train: int, num_test: int, input_dim: int, output_dim: int, noise: float, seed: int
) -> tuple[RegressionSource, RegressionSource]:
    rng = np.random.default_rng(seed)
    hidden = 2 * input_dim
    a = rng.normal(size=(input_dim, hidden)) / np.sqrt(input_dim)
    b = rng.normal(size=(hidden, output_dim)) / np.sqrt(hidden)

    def draw(n: int) -> RegressionSource:
        x = rng.normal(size=(n, input_dim))
        y = np.tanh(x @ a) @ b + noise * rng.normal(size=(n, output_dim))
        return RegressionSource(x.astype(np.float32), y.astype(np.float32))

    return draw(num_train), draw(num_test)
