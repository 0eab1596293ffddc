"""SynthTalk: generation speed, build times, what the data teaches, input-pipeline throughput.

Builds `voxceleb_like_tiny`, `mead_like_tiny` and `voxceleb_like_default` from scratch in a fresh
directory (the default build takes minutes), then runs the probes and times the grain pipelines of
each window type on the default build. Set MACL_BENCH_DATA_DIR to keep the builds under that
directory (a new subdirectory per run, so build times are always measured, never reused).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

from benchmarks.harness import Row, median_time
from data_pipelines import datasets, loader
from data_pipelines.synthtalk import builder, probes, speech
from data_pipelines.synthtalk.clip import generate_clip
from data_pipelines.synthtalk.specs import variant
from data_pipelines.windows import MDNClips, RendererPairs, SFEWindows


def _build(spec, data_dir: str) -> tuple[str, float]:
    start = time.perf_counter()
    path = builder.build(spec, data_dir)
    return path, time.perf_counter() - start


def _split(path: str, split: str) -> list[dict]:
    source = datasets.clip_source(path, split)
    return [source[i] for i in range(len(source))]


def _pipeline_rate(source, window, batch: int, workers: int, num_batches: int) -> float:
    ds = loader.global_batch_dataset(source, global_batch_size=batch, process_index=0, process_count=1, seed=0, transform=window)
    it = loader.make_iterator(ds, worker_count=workers, prefetch=2)
    next(it)  # start-up (worker spawn) is not throughput
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    rate = num_batches * batch / (time.perf_counter() - start)
    it.close()
    return rate


def run() -> list[Row]:
    rows: list[Row] = []
    keep = os.environ.get("MACL_BENCH_DATA_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="synthtalk-bench-", dir=keep or None)

    for size in (64, 128, 256):
        spec = variant("voxceleb_like", "tiny", image_size=size)
        seconds = median_time(lambda: generate_clip(spec, "train", 0, 0), warmup=1, repeats=3)
        rows.append(Row(f"generate one 64-frame clip at {size} px (speech + motion + render)", seconds * 1e3, "ms",
                        notes=f"{seconds / spec.num_frames * 1e3:.2f} ms/frame, one core"))
    spec = variant("voxceleb_like", "tiny")
    voice = speech.sample_voice(np.random.default_rng(0))
    alignment = speech.sample_utterance(np.random.default_rng(1), 10.0, voice)
    seconds = median_time(lambda: speech.synthesize(alignment, voice, np.random.default_rng(2)), warmup=1, repeats=5)
    rows.append(Row("speech synthesis", seconds / 10.0 * 1e3, "ms per s of audio", notes="one core"))

    for kind, size in (("voxceleb_like", "tiny"), ("mead_like", "tiny"), ("voxceleb_like", "default")):
        spec = variant(kind, size)
        path, seconds = _build(spec, data_dir)
        clips = sum(spec.num_clips(s) for s in ("train", "validation", "test"))
        target = 60.0 if size == "tiny" else 900.0
        rows.append(Row(f"build {spec.name} ({clips} clips x {spec.num_frames} frames at {spec.image_size} px)", seconds, "s",
                        baseline=target, baseline_name="target", notes=f"{os.cpu_count()} worker processes"))
        if size == "default":
            default_path = path

    train, validation, test = (_split(default_path, s) for s in ("train", "validation", "test"))
    scores = probes.lip_and_pose_probe(probes.frame_probe_data(train, frame_stride=2), probes.frame_probe_data(test, frame_stride=2))
    rows.append(Row("ridge mel window -> mouth opening, R^2 on unseen speakers", scores["mouth_r2"], "R^2", baseline=0.5,
                    baseline_name="acceptance", notes="voxceleb_like_default, every 2nd frame"))
    rows.append(Row("ridge mel window -> head yaw, R^2 on unseen speakers", scores["yaw_r2"], "R^2",
                    notes="one-to-many head motion: should stay well below the mouth figure"))
    identity = probes.speaker_probe(train, validation)
    rows.append(Row("speaker id from clip-mean log-mel (nearest centroid)", identity["accuracy"], "accuracy",
                    baseline=identity["chance"], baseline_name="chance", notes=f"{identity['num_clips']} held-out clips of seen speakers"))

    source = datasets.clip_source(default_path, "train")
    for name, window, batch in (("sfe", SFEWindows(), 16), ("mdn", MDNClips(), 16), ("renderer", RendererPairs(), 32)):
        for workers in (0, 2):
            rate = _pipeline_rate(source, window, batch, workers, num_batches=12)
            rows.append(Row(f"pipeline {name} windows, {workers} workers", rate, "examples/s",
                            notes=f"voxceleb_like_default, batch {batch}"))
    if not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows
