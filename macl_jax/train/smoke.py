"""The `smoke` stage: an MLP on the procedural regression data, through the full runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from data_pipelines.loader import global_batch_dataset, make_iterator
from data_pipelines.smoke_regression import make_splits
from macl_jax.config import fingerprint
from macl_jax.evals.regression import HeldOutRegression
from macl_jax.losses.regression import mean_squared_error
from macl_jax.models.mlp import MLP
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import fit
from macl_jax.train.runtime import runtime_mesh
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


def run(config: Any, workdir: Path) -> dict[str, Any]:
    """Trains and evaluates; returns the final metrics."""
    mesh = runtime_mesh(config)
    dc = config.dataset
    train_source, test_source = make_splits(
        dc.num_train, dc.num_test, dc.input_dim, dc.output_dim, dc.noise, dc.seed
    )
    task = build_task(config)
    dataset = global_batch_dataset(
        train_source,
        global_batch_size=config.train.global_batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        seed=config.seed,
    )
    train_iter = make_iterator(dataset, worker_count=config.data.worker_count, prefetch=config.data.prefetch)
    evaluator = HeldOutRegression(
        lambda state, x: task.model(state)(x, train=False),
        test_source.x,
        test_source.y,
        train_source.y.mean(axis=0),
        mesh,
    )
    result = fit(
        task,
        config=config,
        workdir=workdir,
        train_iter=train_iter,
        mesh=mesh,
        evaluators=[evaluator],
        fingerprint=fingerprint(config),
    )
    final = evaluator.run(result.state)
    return {
        "step": result.step,
        "preempted": result.preempted,
        "train_loss": result.last_metrics.get("loss"),
        **{f"heldout_{k}": v for k, v in final.items()},
        "noise_floor_mse": float(np.square(dc.noise)),
    }
