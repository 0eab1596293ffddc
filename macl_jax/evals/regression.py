"""Held-out evaluation of the smoke regression model.

Reported: mean squared error and its ratio to the predict-the-training-mean baseline, the median
absolute error (pooled over the whole test set), and the Fréchet distance between the
distributions of predictions and targets (Gaussian statistics merged across shards).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.evals.sharded import GAUSSIAN, MEAN, POOL
from macl_jax.metrics.distribution import frechet_distance


class HeldOutRegression:
    name = "heldout"
    reductions = {"se": MEAN, "baseline_se": MEAN, "abs_error": POOL, "prediction": GAUSSIAN, "target": GAUSSIAN}

    def __init__(self, predict: Callable[[Any, jax.Array], jax.Array], train_mean: np.ndarray):
        self._predict = predict
        self._train_mean = jnp.asarray(train_mean, jnp.float32)

    def per_example(self, state: Any, batch: Any) -> dict[str, jax.Array]:
        prediction = self._predict(state, batch["x"]).astype(jnp.float32)
        target = batch["y"].astype(jnp.float32)
        return {
            "se": jnp.mean(jnp.square(prediction - target), axis=-1),
            "baseline_se": jnp.mean(jnp.square(self._train_mean - target), axis=-1),
            "abs_error": jnp.mean(jnp.abs(prediction - target), axis=-1),
            "prediction": prediction,
            "target": target,
        }

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        mu_p, cov_p = reduced["prediction"].mean_cov()
        mu_t, cov_t = reduced["target"].mean_cov()
        return {
            "mse": reduced["se"],
            "baseline_mse": reduced["baseline_se"],
            "relative_mse": reduced["se"] / reduced["baseline_se"],
            "median_abs_error": float(np.median(reduced["abs_error"])),
            "frechet_distance": frechet_distance(mu_p, cov_p, mu_t, cov_t),
            "count": reduced["se/count"],
        }
