"""MACL stage 1 (SFE) at the `full` preset's shapes: training step and audio-branch inference.

Shapes are those of the authors' timings (docs/decisions.md#reference-timings): a training step on
frames (B=2, S=5, 5 frames, 256x256) with audio (2, 5, 20, 80), and the audio branch (encoder,
Bi-GRU, addressing heads, banks) on (10, 20, 20, 80). The step includes the fused per-frame
augmentation. On a GPU/TPU the step runs in bfloat16 and MFU is reported against the device's
peak bf16 FLOP/s (`PEAK_TFLOPS`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import Row, compiled_flops, matmul_peak_gflops, median_time, peak_host_memory_mb, time_train_step
from macl_jax.config import freeze, load_config
from macl_jax.train import sfe

AUTHORS_STEP_S = 5.08  # docs/decisions.md#reference-timings: SFE training step at 256 px, torch CPU, 2 threads
AUTHORS_AUDIO_S = 0.059  # audio branch forward, (10, 20, 20, 80)
# Dense bf16 peak of accelerators the suite may meet (vendor figures, TFLOP/s).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "TPU v4": 275.0, "TPU v5": 197.0}


def device_peak_tflops() -> float | None:
    kind = jax.devices()[0].device_kind
    for name, peak in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return None


def _config(compute_dtype: str):
    config = load_config("configs/sfe.py:full")
    config.runtime.compute_dtype = compute_dtype
    return freeze(config)


def run(batch: int = 2, steps: int = 5, size: int = 256) -> list[Row]:
    on_cpu = jax.default_backend() == "cpu"
    dtype_name = "float32" if on_cpu else "bfloat16"
    rows: list[Row] = []
    peak = matmul_peak_gflops()
    rows.append(Row("f32 matmul 2048^3 (device compute ceiling)", peak, "GFLOP/s"))
    config = _config(dtype_name)
    task = sfe.build_task(config, epoch_steps=1)
    rng = np.random.default_rng(0)
    host = {
        "audio": rng.uniform(size=(batch, steps, 20, 80)).astype(np.float32),
        "frames": rng.integers(0, 256, size=(batch, steps, 5, size, size, 3)).astype(np.uint8),
    }
    seconds, flops, state = time_train_step(task, host, warmup=2, repeats=5 if on_cpu else 20)
    shape = f"B={batch}, S={steps}, {size} px, {dtype_name}"
    rows.append(Row(f"SFE full train step ({shape})", batch / seconds, "clips/s", batch / AUTHORS_STEP_S,
                    "authors' torch CPU", notes=f"{seconds:.3f} s/step (authors 5.08 s)"))
    if flops:
        achieved = flops / seconds / 1e9
        rows.append(Row("SFE full train step, compiled FLOPs", flops / 1e9, "GFLOP", notes="XLA cost analysis, one step"))
        rows.append(Row("SFE full train step, achieved", achieved, "GFLOP/s", peak, "matmul ceiling"))
        tflops = device_peak_tflops()
        if tflops and not on_cpu:
            rows.append(Row("SFE full train step MFU (bf16)", achieved / (tflops * 1e3), "fraction", notes=f"peak {tflops} TFLOP/s"))

    model = task.model(state)
    audio = jnp.asarray(rng.uniform(size=(10, 20, 20, 80)).astype(np.float32))

    @jax.jit
    def audio_branch(x):
        return model.sfe.encode_audio(x, train=False)["content"]

    audio_flops = compiled_flops(audio_branch, audio)
    audio_s = median_time(lambda: audio_branch(audio).block_until_ready())
    rows.append(Row("SFE audio branch forward (10 x 20 windows)", 200 / audio_s, "windows/s", 200 / AUTHORS_AUDIO_S,
                    "authors' torch CPU", notes=f"{audio_s * 1e3:.1f} ms (authors 59 ms)"
                    + (f"; {audio_flops / 1e9:.2f} GFLOP" if audio_flops else "")))
    rows.append(Row("peak host memory of the suite", peak_host_memory_mb(), "MiB"))
    if os.environ.get("MACL_BENCH_VERBOSE"):
        print(rows)
    return rows
