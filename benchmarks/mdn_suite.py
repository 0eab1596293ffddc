"""MACL stage 2 (MDN): training step and inference at the authors' shapes.

The authors' timing (docs/decisions.md#reference-timings) is a training step on audio (16, 60, 20, 80)
with M = 3 at the reference code's sizes (docs/decisions.md#mdn-architecture: Bi-GRU 128, 256-slot banks, one sigma per
component, the reference loss): 1.46 s, 1,528,215 parameters. The same step is timed here at those
sizes, then at the `full` preset's (docs/decisions.md#d1-mdn-speech-branch: the SFE's speech sizes, separate sigma groups,
reference-pose conditioning). Inference is the forward pass, the highest-weight component, the
de-alignment and the Savitzky-Golay smoothing, for one clip and for 16.
"""

from __future__ import annotations

import jax
import numpy as np

from benchmarks.harness import Row, compiled_flops, matmul_peak_gflops, median_time, peak_host_memory_mb, print_rows, time_train_step
from macl_jax.config import freeze, load_config
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import mdn
from macl_jax.train.loop import create_state

AUTHORS_STEP_S = 1.46  # batch 16, T = 60, M = 3, torch CPU 2 threads
AUTHORS_PARAMS = 1_528_215  # includes a BatchNorm(64) the reference defines and never uses (128)
BATCH, FRAMES = 16, 60
# The reference code's MDN sizes and loss (docs/decisions.md#mdn-architecture).
REFERENCE_SIZES = [
    "model.gru_hidden=128", "model.slots=256", "model.sigma=shared", "model.reference_pose=False", "model.head_dropout=0.8",
    "loss.code_faithful=True",
]


def _config(overrides: list[str]):
    return freeze(load_config("configs/mdn.py:full", [f"train.global_batch_size={BATCH}", *overrides]))


def _batch(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch with the fields and shapes the MDN stage reads; values are random but well-formed."""
    rng = np.random.default_rng(seed)
    aligned = rng.normal(0, 0.45, (batch, FRAMES, 68, 2)).astype(np.float32)
    return {
        "audio": rng.uniform(size=(batch, FRAMES, 20, 80)).astype(np.float32),
        "aligned": aligned,
        "angle": rng.normal(0, 0.05, (batch, FRAMES)).astype(np.float32),
        "translation": rng.normal(0, 0.05, (batch, FRAMES, 2)).astype(np.float32),
        "reference": aligned[:, 0],
        "reference_index": rng.integers(0, FRAMES, batch).astype(np.int32),
        "landmarks": (aligned * 40 + 128).astype(np.float32),
        "scale": np.full((batch,), 40.0, np.float32),
        "offset": np.zeros((batch, 2), np.float32),
    }


def _count(state) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))


def run(repeats: int = 7, warmup: int = 2) -> list[Row]:
    rows: list[Row] = []
    peak = matmul_peak_gflops()
    rows.append(Row("f32 matmul 2048^3 (device compute ceiling)", peak, "GFLOP/s", notes="baseline for the ratios below"))
    for label, overrides in (("reference sizes", REFERENCE_SIZES), ("full preset (SFE-sized speech)", [])):
        task = mdn.build_task(_config(overrides))
        seconds, flops, state = time_train_step(task, _batch(BATCH), warmup=warmup, repeats=repeats)
        params = _count(state)
        rows.append(Row(f"MDN train step, {label}, batch {BATCH}, T={FRAMES}, M=3", BATCH / seconds, "clips/s",
                        BATCH / AUTHORS_STEP_S, "authors' PyTorch CPU",
                        notes=f"{seconds:.3f} s/step (authors 1.46 s); {params:,} parameters "
                        f"(authors {AUTHORS_PARAMS:,} with an unused BatchNorm(64) of 128)"))
        if flops:
            rows.append(Row(f"MDN train step, {label}, achieved", flops / seconds / 1e9, "GFLOP/s", peak, "matmul ceiling",
                            notes=f"{flops / 1e9:.1f} GFLOP per step (XLA cost analysis; authors count 80.1 for matmul+conv)"))

    # Inference with the full preset: forward, max-alpha, de-alignment, smoothing.
    config = _config([])
    task = mdn.build_task(config)
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    state, _, _ = create_state(task, jax.random.key(0), mesh)
    infer = jax.jit(lambda s, b: mdn.predict(task, s, b, config)["pixels"])
    for batch_size in (1, BATCH):
        with jax.set_mesh(mesh):
            batch = to_global_batch(_batch(batch_size), mesh)
            flops = compiled_flops(infer, state, batch)
            seconds = median_time(lambda: infer(state, batch).block_until_ready(), warmup=warmup, repeats=repeats)
        rows.append(Row(f"MDN full inference, batch {batch_size}", batch_size * FRAMES / seconds, "frames/s",
                        notes=f"{seconds * 1e3:.1f} ms per call of {batch_size} x {FRAMES} frames"
                        + (f"; {flops / 1e9:.2f} GFLOP" if flops else "")))
    rows.append(Row("peak host memory of the suite", peak_host_memory_mb(), "MiB"))
    return rows


if __name__ == "__main__":  # prints only; benchmarks/run.py saves the suite's table
    print_rows(run(repeats=3, warmup=1))
