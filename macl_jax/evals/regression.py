"""Held-out mean squared error against the predict-the-training-mean baseline."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from macl_jax.losses.regression import mean_squared_error
from macl_jax.train.state import TrainState


class HeldOutRegression:
    """Every process evaluates the whole (small) test set, replicated; numbers are identical."""

    name = "heldout"

    def __init__(
        self,
        predict: Callable[[TrainState, jax.Array], jax.Array],
        x: np.ndarray,
        y: np.ndarray,
        train_mean: np.ndarray,
        mesh: Mesh,
    ):
        replicated = NamedSharding(mesh, P())
        self._x = jax.device_put(x, replicated)
        self._y = jax.device_put(y, replicated)
        self._predict = jax.jit(predict)
        self.baseline_mse = float(np.mean((y - train_mean[None]) ** 2))

    def run(self, state: TrainState) -> dict[str, float]:
        mse = float(np.asarray(jax.jit(mean_squared_error)(self._predict(state, self._x), self._y).addressable_data(0)))
        return {"mse": mse, "baseline_mse": self.baseline_mse, "relative_mse": mse / self.baseline_mse}
