"""The Rhythmic Head Motion generator at the paper's sizes (`configs/rhm.py:full`: 256 px, ngf 32,
5 downsamplings, K = 8; random weights) beside the ResUnet `full`, measured in the same run.

1. Inference: the generator in eval mode with the 3-D render, fed as `generate --renderer rhm`
   feeds it (`macl_jax.infer.render.OnePhotoInputs`: the astronaut photo as every reference, a
   turning head), 1 and 16 frames per call; frames/s against the ResUnet's at the same batch,
   with the MACL paper's end-to-end 25.3 frames/s (V100) as the figure to beat.
2. Training: one step (discriminator, then generator, VGG and feature matching on) at the paper's
   batch 4, samples/s against the ResUnet `full` step (L1 + VGG perceptual) at batch 4.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from benchmarks.harness import Row, compiled_flops, matmul_peak_gflops, median_time, peak_host_memory_mb, print_rows, time_train_step
from benchmarks.renderer_suite import _batch as resunet_batch
from macl_jax.config import freeze, load_config
from macl_jax.evals.rhm import FIELDS, generator_sizes
from macl_jax.geometry.camera import Orthographic
from macl_jax.infer.inputs import crop_face, find_face
from macl_jax.infer.render import OnePhotoInputs, rhm_predictor
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import renderer, rhm
from macl_jax.train.loop import create_state

SIZE = 256
MACL_PAPER_FPS = 25.3  # end to end, V100 (the MACL paper)


def _inputs(config) -> tuple[OnePhotoInputs, np.ndarray]:
    """The astronaut at 256 px and a head track turning +-10 degrees in the image plane."""
    from skimage import data

    photo = data.astronaut()
    crop, landmarks = crop_face(photo, find_face(photo), SIZE, 2.0)
    centre = landmarks.mean(axis=0)
    track = []
    for degrees in np.linspace(-10.0, 10.0, 16):
        a = np.deg2rad(degrees)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        track.append((landmarks - centre) @ rot.T + centre)
    return OnePhotoInputs(crop, landmarks, generator_sizes(config).num_refs), np.stack(track)


def _rhm_batch(inputs: OnePhotoInputs, track: np.ndarray, n: int) -> dict:
    batch = inputs(track[:n])
    return {k: np.ascontiguousarray(batch[k]) for k in FIELDS}


def run(repeats: int = 5, warmup: int = 1) -> list[Row]:
    rows: list[Row] = []
    peak = matmul_peak_gflops()
    rows.append(Row("f32 matmul 2048^3 (device compute ceiling)", peak, "GFLOP/s", notes="baseline for the ratios below"))
    mesh = make_mesh({"data": -1}, devices=jax.devices()[:1])
    key = jax.random.key(0)

    config = freeze(load_config("configs/rhm.py:full", ["loss.vgg=0"]))
    inputs, track = _inputs(config)
    task = rhm.build_task(config)
    state, _, _ = create_state(task, key, mesh)
    predict = rhm_predictor(task)
    r_config = freeze(load_config("configs/renderer.py:full", ["loss.perceptual=0", "loss.style=0"]))
    r_task = renderer.build_task(r_config)
    r_state, _, _ = create_state(r_task, key, mesh)
    r_predict = jax.jit(r_task.predict)
    for n in (1, 16):
        batch = to_global_batch(_rhm_batch(inputs, track, n), mesh)
        r_batch = to_global_batch(resunet_batch(n), mesh)
        with jax.set_mesh(mesh):
            flops = compiled_flops(predict, state, batch)
            seconds = median_time(lambda: predict(state, batch).block_until_ready(), warmup=warmup, repeats=repeats)
            r_seconds = median_time(lambda: r_predict(r_state, r_batch).block_until_ready(), warmup=warmup, repeats=repeats)
        rows.append(Row(f"RHM full inference 256 px, {n} frame(s) per call", n / seconds, "frames/s", n / r_seconds,
                        "ResUnet full, same batch, this run",
                        notes=f"{seconds / n:.3f} s/frame (ResUnet {r_seconds / n:.3f}); MACL paper end to end: {MACL_PAPER_FPS} frames/s on a V100"))
        if flops:
            rows.append(Row(f"RHM full inference ({n} per call) achieved", flops / seconds / 1e9, "GFLOP/s", peak,
                            "matmul ceiling", notes=f"{flops / 1e9:.1f} GFLOP per call (XLA cost analysis)"))

    batch_size = 4
    t_config = freeze(load_config("configs/rhm.py:full", [f"train.global_batch_size={batch_size}"]))
    host = _rhm_batch(inputs, track, batch_size)
    host["target_image"] = host["ref_images"][:, 0].copy()  # a real image as the target
    # The one-photo inputs are in the crop's pixels: the orthographic camera, as in generation.
    t_task = dataclasses.replace(rhm.build_task(t_config), camera=Orthographic())
    seconds, flops, _ = time_train_step(t_task, host, warmup=warmup, repeats=3)
    r_seconds, _, _ = time_train_step(
        renderer.build_task(freeze(load_config("configs/renderer.py:full", ["loss.style=0", f"train.global_batch_size={batch_size}"]))),
        resunet_batch(batch_size), warmup=warmup, repeats=3,
    )
    rows.append(Row(f"RHM full train step 256 px, batch {batch_size} (D + G, VGG, feature matching, flow)",
                    batch_size / seconds, "samples/s", batch_size / r_seconds, "ResUnet full step (L1 + VGG16), same batch, this run",
                    notes=f"{seconds:.2f} s/step (ResUnet {r_seconds:.2f})"))
    if flops:
        rows.append(Row("RHM full train step achieved", flops / seconds / 1e9, "GFLOP/s", peak, "matmul ceiling",
                        notes=f"{flops / 1e9:.1f} GFLOP per step (XLA cost analysis)"))
    rows.append(Row("peak host memory of the suite", peak_host_memory_mb(), "MiB"))
    return rows


if __name__ == "__main__":  # prints only; benchmarks/run.py saves the suite's table
    print_rows(run())
