"""The shared runtime: step throughput and FLOP/s, input pipeline, checkpoint save/restore."""

from __future__ import annotations

import tempfile
import time

import jax
import jax.numpy as jnp

from benchmarks.harness import Row, compiled_flops, matmul_peak_gflops, median_time, peak_host_memory_mb
from data_pipelines.loader import global_batch_dataset, make_iterator
from data_pipelines.smoke_regression import make_splits
from macl_jax.checkpoint import CheckpointManager
from macl_jax.config import freeze, load_config
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train.loop import create_state, make_step_fn
from macl_jax.train.smoke import build_task


def run() -> list[Row]:
    rows: list[Row] = []
    peak = matmul_peak_gflops()
    rows.append(Row("f32 matmul 2048^3 (device compute ceiling)", peak, "GFLOP/s", notes="baseline for the ratios below"))

    config = freeze(load_config("configs/smoke.py:default"))
    dc = config.dataset
    train, _ = make_splits(dc.num_train, dc.num_test, dc.input_dim, dc.output_dim, dc.noise, dc.seed)
    batch_size = config.train.global_batch_size
    mesh = make_mesh({"data": -1})
    task = build_task(config)
    key = jax.random.key(0)
    state, shardings, _ = create_state(task, key, mesh)
    step = make_step_fn(task, shardings)
    batch = to_global_batch({"x": train.x[:batch_size], "y": train.y[:batch_size]}, mesh)
    flops = compiled_flops(step, state, batch, key)

    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step(holder["state"], batch, key)
        jax.block_until_ready(metrics["loss"])

    with jax.set_mesh(mesh):
        seconds = median_time(one_step)
    rows.append(Row(f"smoke train step (MLP 3x256, batch {batch_size})", batch_size / seconds, "examples/s",
                    notes=f"{seconds * 1e3:.2f} ms/step"))
    if flops:
        rows.append(Row("smoke train step achieved", flops / seconds / 1e9, "GFLOP/s", peak, "matmul ceiling",
                        notes=f"{flops / 1e6:.1f} MFLOP/step (XLA cost analysis)"))

    dataset = global_batch_dataset(train, global_batch_size=batch_size, process_index=0, process_count=1, seed=0)
    iterator = make_iterator(dataset)
    next(iterator)
    n_batches = 200
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(iterator)
    rows.append(Row("grain global-batch loader (in-memory source)", n_batches * batch_size / (time.perf_counter() - t0),
                    "examples/s", notes="one process, no workers"))

    big = {"w": jnp.ones((4096, 4096), jnp.float32), "step": jnp.zeros((), jnp.int32)}  # 64 MiB
    size_mb = 64.0
    with tempfile.TemporaryDirectory() as tmp:
        manager = CheckpointManager(tmp, max_to_keep=2, async_save=True)
        t0 = time.perf_counter()
        manager.save(1, big, force=True)
        blocking = time.perf_counter() - t0
        manager.wait_until_finished()
        total = time.perf_counter() - t0
        abstract_big = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), big)
        t0 = time.perf_counter()
        manager.restore(abstract_big)
        restore = time.perf_counter() - t0
        manager.close()
    rows.append(Row("checkpoint save, blocking part (64 MiB)", blocking * 1e3, "ms", notes="training continues after this"))
    rows.append(Row("checkpoint save, until on disk (64 MiB)", size_mb / total, "MiB/s"))
    rows.append(Row("checkpoint restore (64 MiB)", size_mb / restore, "MiB/s"))
    rows.append(Row("peak host memory of the suite", peak_host_memory_mb(), "MiB"))
    return rows
