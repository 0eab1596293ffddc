"""What the SynthTalk and real-data builders share: the stored example, worker processes, "is it built?".

Both builders turn a sorted list of tasks into examples of the one clip schema
(data_pipelines.schema) in a pool of processes, keep the task order (so the files do not depend
on the number of workers), and rely on tfds writing a build into a temporary directory that is
renamed into place when complete.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from data_pipelines.schema import NUM_LANDMARKS

# Modules that run threads once imported; a fork of a process running them can deadlock in the child.
_THREADED_MODULES = ("jax", "grpc", "apache_beam")


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    # Fixed encoder settings: byte-identical output for identical pixels.
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality, subsampling=0, optimize=False)
    return buffer.getvalue()


def schema_example(
    *,
    clip_id: str,
    speaker_id: str,
    speaker: int,
    emotion: str,
    intensity: int,
    fps: float,
    sample_rate: int,
    jpeg_quality: int,
    audio: np.ndarray,
    frames: Sequence[np.ndarray] = (),
    landmarks_2d: np.ndarray | None = None,
    landmarks_3d: np.ndarray | None = None,
    landmarks_valid: np.ndarray | None = None,
    head_rotation: np.ndarray | None = None,
    head_translation: np.ndarray | None = None,
    visemes: np.ndarray | None = None,
    phonemes: np.ndarray | None = None,
    phoneme_start: np.ndarray | None = None,
    phoneme_end: np.ndarray | None = None,
) -> dict[str, Any]:
    """One example of the clip schema, every field in its stored dtype.

    `frames` (uint8 (T, H, W, 3)) are JPEG-encoded here. A field left out is stored empty: the
    video fields of an audio-only clip (T = 0), the SynthTalk-only visemes and phonemes of real
    data. `landmarks_valid` defaults to True on every frame.
    """

    def float32(value, *shape: int) -> np.ndarray:
        return np.zeros((0, *shape), np.float32) if value is None else np.asarray(value, np.float32)

    return {
        "clip_id": clip_id,
        "speaker_id": speaker_id,
        "speaker": np.int32(speaker),
        "emotion": emotion,
        "intensity": np.int32(intensity),
        "fps": np.float32(fps),
        "sample_rate": np.int32(sample_rate),
        "frames": np.array([encode_jpeg(f, jpeg_quality) for f in frames], dtype=object),
        "audio": np.asarray(audio, np.float32),
        "landmarks_2d": float32(landmarks_2d, NUM_LANDMARKS, 2),
        "landmarks_3d": float32(landmarks_3d, NUM_LANDMARKS, 3),
        "landmarks_valid": np.ones(len(frames), bool) if landmarks_valid is None else np.asarray(landmarks_valid, bool),
        "head_rotation": float32(head_rotation, 3, 3),
        "head_translation": float32(head_translation, 3),
        "visemes": float32(visemes, 4),
        "phonemes": np.zeros(0, np.int32) if phonemes is None else np.asarray(phonemes, np.int32),
        "phoneme_start": float32(phoneme_start),
        "phoneme_end": float32(phoneme_end),
    }


def worker_count(num_workers: int) -> int:
    """`num_workers`, or one per CPU core for 0."""
    return num_workers or os.cpu_count() or 1


def worker_context() -> multiprocessing.context.BaseContext | None:
    """How to start worker processes from this one.

    fork when no threaded runtime (JAX, gRPC under Beam) is loaded: fast, and works from
    notebooks. spawn otherwise, since their threads make fork unsafe. spawn re-imports
    __main__, impossible for code typed at a prompt: then None, and the work stays in this process.
    """
    if not any(name in sys.modules for name in _THREADED_MODULES):
        return multiprocessing.get_context("fork")
    main = sys.modules.get("__main__")
    if main is not None and not getattr(main, "__file__", None) and not getattr(main, "__spec__", None):
        return None
    return multiprocessing.get_context("spawn")


def process_pool(num_workers: int) -> contextlib.AbstractContextManager:
    """A context giving a pool of `num_workers` processes (0 = one per core), or None where the work
    stays in this process (one worker, or no safe way to start more)."""
    workers = worker_count(num_workers)
    context = worker_context() if workers > 1 else None
    if context is None:
        return contextlib.nullcontext()
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)


def ordered_map(pool, function: Callable, tasks: Iterable, chunksize: int = 1) -> Iterator:
    """`function` over `tasks` in task order, in `pool` (None: in this process)."""
    if pool is None:
        return map(function, tasks)
    return pool.map(function, tasks, chunksize=chunksize)


def is_built(dataset_dir: str, *also: str) -> bool:
    """True once tfds renamed a complete build into place (dataset_info.json is written last) and
    the files named in `also` (written after that rename, e.g. a report) exist there too."""
    return all(os.path.exists(os.path.join(dataset_dir, name)) for name in ("dataset_info.json", *also))
