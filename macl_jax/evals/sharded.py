"""Sharded evaluation: each process evaluates its rows, results are reduced over the whole set.

An evaluator computes per-example outputs inside one jitted function over the global batch and
declares how each output is reduced:

* `MEAN`: a (B,) value averaged over real examples (a weighted mean: sum / count).
* `POOL`: a (B, ...) value gathered from every process (e.g. verification scores for an EER).
* `GAUSSIAN`: a (B, D) feature whose count, sum and sum of outer products are summed (FID).

Padding rows (`batch["valid"] == 0`, see `data_pipelines.loader.evaluation_dataset`) are
ignored, so the numbers are the same for any batch size, device count and process count
(up to float32 summation order).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from data_pipelines.loader import evaluation_dataset, make_iterator
from macl_jax.metrics.distribution import GaussianStats
from macl_jax.parallel import check_global_batch, process_batch_shard, to_global_batch

MEAN, POOL, GAUSSIAN = "mean", "pool", "gaussian"


class ShardedEvaluator(Protocol):
    """What `evaluate` needs: per-example outputs, their reductions, and the final metrics."""

    name: str
    reductions: Mapping[str, str]

    def per_example(self, state: Any, batch: Any) -> dict[str, jax.Array]: ...

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]: ...


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(x.addressable_data(0)) if not x.is_fully_addressable else np.asarray(x)


def batch_reducer(evaluator: ShardedEvaluator, mesh: Mesh):
    """Jitted: per-example outputs of one global batch -> masked partial sums / gathered values."""

    def reduce(state: Any, batch: Any) -> dict[str, Any]:
        values = evaluator.per_example(state, batch)
        mask = batch["valid"].astype(jnp.float32)
        out: dict[str, Any] = {}
        for name, kind in evaluator.reductions.items():
            v = values[name].astype(jnp.float32)
            if kind == MEAN:
                out[name] = (jnp.sum(v * mask), jnp.sum(mask))
            elif kind == GAUSSIAN:
                w = v * mask[:, None]
                out[name] = (jnp.sum(mask), jnp.sum(w, 0), w.T @ v)
            elif kind == POOL:
                out[name] = (v, mask)
            else:
                raise ValueError(f"{evaluator.name}: unknown reduction {kind!r} for {name!r}")
        return out

    # Everything comes back replicated: pooled values are all-gathered by XLA, so every process
    # holds the whole test set's scores.
    return jax.jit(reduce, out_shardings=NamedSharding(mesh, P()))


def evaluate(
    evaluator: ShardedEvaluator, state: Any, batches: Iterable[Any], mesh: Mesh, *, reducer: Any = None
) -> dict[str, float]:
    """Runs `evaluator` over per-process `batches` and returns its final metrics.

    Pass the `reducer` from an earlier call (`batch_reducer`) to reuse its compilation.
    """
    step = reducer or batch_reducer(evaluator, mesh)
    sums: dict[str, list[float]] = {}
    gauss: dict[str, GaussianStats] = {}
    pools: dict[str, list[np.ndarray]] = {}
    with jax.set_mesh(mesh):
        for local in batches:
            out = step(state, to_global_batch(local, mesh))
            for name, kind in evaluator.reductions.items():
                if kind == MEAN:
                    total, count = (float(_host(x)) for x in out[name])
                    acc = sums.setdefault(name, [0.0, 0.0])
                    acc[0] += total
                    acc[1] += count
                elif kind == GAUSSIAN:
                    count, total, outer = (_host(x).astype(np.float64) for x in out[name])
                    part = GaussianStats(float(count), total, outer)
                    gauss[name] = gauss[name] + part if name in gauss else part
                else:
                    values, mask = (_host(x) for x in out[name])
                    pools.setdefault(name, []).append(values[mask > 0])
    reduced: dict[str, Any] = {}
    for name, kind in evaluator.reductions.items():
        if kind == MEAN:
            total, count = sums.get(name, (0.0, 0.0))
            reduced[name] = total / count if count else float("nan")
            reduced[f"{name}/count"] = count
        elif kind == GAUSSIAN:
            reduced[name] = gauss[name]
        else:
            reduced[name] = np.concatenate(pools[name]) if name in pools else np.zeros((0,))
    return evaluator.finalize(reduced)


class ShardedEval:
    """Adapter for the training loop: a fresh ordered pass over `source` at every call."""

    def __init__(
        self, evaluator: ShardedEvaluator, source: Any, global_batch_size: int, mesh: Mesh, *, reducer: Any = None
    ):
        """`reducer`: another ShardedEval's `reducer` whose evaluator has the same `per_example`
        and reductions (e.g. one evaluator on two splits), to share one compilation."""
        self.evaluator = evaluator
        self.name = evaluator.name
        self.source = source
        self.global_batch_size = global_batch_size
        self.mesh = mesh
        check_global_batch(global_batch_size, mesh)
        # Built once: periodic evaluations reuse one compilation.
        self._reducer = reducer or batch_reducer(evaluator, mesh)

    @property
    def reducer(self) -> Any:
        return self._reducer

    def run(self, state: Any) -> dict[str, float]:
        shard_index, shard_count = process_batch_shard(self.mesh)
        dataset = evaluation_dataset(
            self.source,
            global_batch_size=self.global_batch_size,
            process_index=shard_index,
            process_count=shard_count,
        )
        return evaluate(self.evaluator, state, make_iterator(dataset, prefetch=0), self.mesh, reducer=self._reducer)
