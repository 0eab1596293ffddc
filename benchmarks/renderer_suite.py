"""The ResUnet renderer at the reference sizes (full preset, 256 px): inference and training step.

Compared with the authors' PyTorch CPU timings (docs/decisions.md#reference-timings: inference 0.345 s per
frame at batch 1, training step 2.27 s at batch 2, L1 only) and with the device's matmul ceiling.
"""

from __future__ import annotations

import jax
import numpy as np

from benchmarks.harness import Row, compiled_flops, matmul_peak_gflops, median_time, peak_host_memory_mb, print_rows, time_train_step
from macl_jax.config import freeze, load_config
from macl_jax.evals.renderer import PAIR_FIELDS
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import renderer
from macl_jax.train.loop import create_state

AUTHORS_INFERENCE_S = 0.345  # per frame, batch 1, 256 px, torch CPU 2 threads
AUTHORS_TRAIN_STEP_S = 2.27  # batch 2, L1 only
SIZE = 256


def _batch(batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8) for k in PAIR_FIELDS}


def _config(overrides: list[str]):
    return freeze(load_config("configs/renderer.py:full", overrides))


def _achieved(rows: list[Row], name: str, flops: float | None, seconds: float, peak: float) -> None:
    if flops:
        rows.append(Row(f"{name} achieved", flops / seconds / 1e9, "GFLOP/s", peak, "matmul ceiling",
                        notes=f"{flops / 1e9:.1f} GFLOP per call (XLA cost analysis)"))


def run(repeats: int = 7, warmup: int = 2) -> list[Row]:
    rows: list[Row] = []
    peak = matmul_peak_gflops()
    rows.append(Row("f32 matmul 2048^3 (device compute ceiling)", peak, "GFLOP/s", notes="baseline for the ratios below"))
    mesh = make_mesh({"data": -1}, devices=jax.devices()[:1])
    key = jax.random.key(0)

    # Inference: the generator alone in eval mode (running BatchNorm statistics).
    config = _config(["loss.perceptual=0", "loss.style=0"])
    task = renderer.build_task(config)
    state, _, _ = create_state(task, key, mesh)
    predict = jax.jit(task.predict)
    for batch_size in (1, 8):
        batch = to_global_batch(_batch(batch_size), mesh)
        with jax.set_mesh(mesh):
            flops = compiled_flops(predict, state, batch)
            seconds = median_time(lambda: predict(state, batch).block_until_ready(), warmup=warmup, repeats=repeats)
        per_frame = seconds / batch_size
        rows.append(Row(f"ResUnet full inference 256 px, batch {batch_size}", 1 / per_frame, "frames/s",
                        1 / AUTHORS_INFERENCE_S, "authors' PyTorch CPU, batch 1",
                        notes=f"{per_frame:.3f} s/frame; authors 0.345 s/frame"))
        _achieved(rows, f"ResUnet full inference batch {batch_size}", flops, seconds, peak)

    # Training steps at batch 2: L1 only (the authors' timing), then with the VGG perceptual term.
    for label, overrides in (
        ("L1 only", ["loss.perceptual=0", "loss.style=0"]),
        ("L1 + VGG16 perceptual (5 layers)", ["loss.style=0"]),
    ):
        config = _config([*overrides, "train.global_batch_size=2"])
        task = renderer.build_task(config)
        seconds, flops, _ = time_train_step(task, _batch(2), warmup=warmup, repeats=repeats)
        rows.append(Row(f"ResUnet full train step 256 px, batch 2, {label}", 2 / seconds, "samples/s",
                        2 / AUTHORS_TRAIN_STEP_S, "authors' PyTorch CPU, L1 only",
                        notes=f"{seconds:.2f} s/step; authors 2.27 s/step"))
        _achieved(rows, f"ResUnet full train step ({label})", flops, seconds, peak)
    rows.append(Row("peak host memory of the suite", peak_host_memory_mb(), "MiB"))
    return rows


if __name__ == "__main__":  # prints only; benchmarks/run.py saves the suite's table
    print_rows(run())
