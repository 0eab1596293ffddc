"""The `smoke` stage: an MLP on the procedural regression data, through the full runtime."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import optax
from flax import nnx

from data_pipelines.smoke_regression import RegressionSource, make_splits
from macl_jax.evals.regression import HeldOutRegression
from macl_jax.evals.sharded import ShardedEval
from macl_jax.losses.regression import mean_squared_error
from macl_jax.models.mlp import MLP
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import fit_and_summarize
from macl_jax.train.runtime import runtime_mesh, training_iterator
from macl_jax.train.state import SupervisedTask


def build_task(config: Any) -> SupervisedTask:
    mc, dc = config.model, config.dataset
    dtype = compute_dtype(config.runtime.compute_dtype)

    def model_fn(rngs: nnx.Rngs) -> MLP:
        return MLP(
            dc.input_dim,
            mc.hidden,
            dc.output_dim,
            depth=mc.depth,
            use_batchnorm=mc.use_batchnorm,
            dropout=mc.dropout,
            dtype=dtype,
            rngs=rngs,
        )

    def loss_fn(model: MLP, batch: dict, rngs: nnx.Rngs, train: bool):
        prediction = model(batch["x"], train=train, rngs=rngs)
        return mean_squared_error(prediction, batch["y"]), {}

    return SupervisedTask(model_fn, loss_fn, optax.adam(config.train.learning_rate))


@functools.lru_cache(maxsize=4)  # frozen configs are hashable: training and evaluators share one draw
def splits(config: Any) -> tuple[RegressionSource, RegressionSource]:
    dc = config.dataset
    return make_splits(dc.num_train, dc.num_test, dc.input_dim, dc.output_dim, dc.noise, dc.seed)


def build_evaluators(config: Any, task: SupervisedTask, mesh: Any) -> list[ShardedEval]:
    train_source, test_source = splits(config)
    evaluator = HeldOutRegression(lambda state, x: task.model(state)(x, train=False), train_source.y.mean(axis=0))
    return [ShardedEval(evaluator, test_source, config.eval.global_batch_size, mesh)]


def run(config: Any, workdir: Path) -> dict[str, Any]:
    """Trains and evaluates; returns the final metrics."""
    mesh = runtime_mesh(config)
    train_source, _ = splits(config)
    task = build_task(config)
    train_iter = training_iterator(train_source, config, mesh)
    evaluators = build_evaluators(config, task, mesh)
    _, summary = fit_and_summarize(
        task, config=config, workdir=workdir, train_iter=train_iter, mesh=mesh, evaluators=evaluators
    )
    return {**summary, "noise_floor_mse": float(np.square(config.dataset.noise))}
