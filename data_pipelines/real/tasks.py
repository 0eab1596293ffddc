"""One clip of a raw dataset (`Task`), what became of it (`Outcome`), and the per-video function between them.

`process_task(task, manual_dir, options, speakers)` turns one Task into an Outcome and, when the
clip is kept, a schema example (data_pipelines.schema). It is the single function that the plain
build (a process pool), `--shard i/N` workers and Apache Beam all run, so the three give the same
dataset.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from typing import Any

import numpy as np

from data_pipelines import build
from data_pipelines.real.preprocess import PreprocessOptions, ProcessedClip, SkipClip, preprocess_audio, preprocess_video


@dataclasses.dataclass(frozen=True)
class Task:
    """One clip of a raw dataset; paths relative to the manual directory."""

    clip_id: str
    split: str
    speaker_id: str
    path: str  # the main file (video, or wav for audio-only datasets)
    audio: str | None = None  # companion audio file (may be absent on disk)
    emotion: str = "neutral"
    intensity: int = 0
    audio_only: bool = False


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one Task (a row of the report)."""

    clip_id: str
    split: str
    path: str
    kept: bool
    reason: str = ""  # SKIP_REASONS key when not kept
    detail: str = ""
    notes: tuple[str, ...] = ()
    frames: int = 0
    seconds: float = 0.0  # processing time
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # kept clips: crop box, source streams, ...

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(**{**data, "notes": tuple(data.get("notes", ()))})


def speaker_index(tasks: list[Task]) -> dict[str, int]:
    """speaker_id -> index in the sorted list of every speaker the scan found (skipped files included)."""
    return {s: i for i, s in enumerate(sorted({t.speaker_id for t in tasks}))}


def example_from_clip(task: Task, clip: ProcessedClip, speaker: int, options: PreprocessOptions) -> dict[str, Any]:
    """The schema example of a preprocessed video clip (see preprocess.py for the 3-D fields)."""
    return build.schema_example(
        **_labels(task, speaker, options),
        audio=clip.audio,
        frames=clip.frames,
        landmarks_2d=clip.landmarks,
        landmarks_3d=clip.landmarks_3d,
        landmarks_valid=clip.valid,
        head_rotation=clip.head_rotation,
        head_translation=clip.head_translation,
    )


def example_from_audio(task: Task, audio: np.ndarray, speaker: int, options: PreprocessOptions) -> dict[str, Any]:
    """The schema example of an audio-only clip: no frames, landmarks or pose (T = 0)."""
    return build.schema_example(**_labels(task, speaker, options), audio=audio)


def _labels(task: Task, speaker: int, options: PreprocessOptions) -> dict[str, Any]:
    return {
        "clip_id": task.clip_id,
        "speaker_id": task.speaker_id,
        "speaker": speaker,
        "emotion": task.emotion,
        "intensity": task.intensity,
        "fps": options.fps,
        "sample_rate": options.sample_rate,
        "jpeg_quality": options.jpeg_quality,
    }


def process_task(
    task: Task, manual_dir: str, options: PreprocessOptions, speakers: dict[str, int]
) -> tuple[Outcome, dict[str, Any] | None]:
    """The per-video function: Task -> (Outcome, schema example or None). Never raises for bad data."""
    start = time.perf_counter()
    path = os.path.join(manual_dir, task.path)
    audio = os.path.join(manual_dir, task.audio) if task.audio else None
    try:
        if task.audio_only:
            waveform, notes, source = preprocess_audio(path, options)
            example = example_from_audio(task, waveform, speakers[task.speaker_id], options)
            frames, info = 0, {"source": source}
        else:
            clip = preprocess_video(path, audio, options)
            example = example_from_clip(task, clip, speakers[task.speaker_id], options)
            notes, frames = clip.notes, len(clip.frames)
            info = {
                "crop_box": [round(v, 4) for v in clip.crop_box],
                "start_frame": clip.start_frame,
                "closed_mouth": clip.closed_mouth,
                "source": clip.source,
            }
    except SkipClip as skip:
        return Outcome(task.clip_id, task.split, task.path, False, skip.reason, skip.detail, seconds=time.perf_counter() - start), None
    except Exception as error:  # noqa: BLE001 - one bad file never stops a build
        detail = f"{type(error).__name__}: {error} | {traceback.format_exc(limit=3)[-600:]}"
        return Outcome(task.clip_id, task.split, task.path, False, "error", detail, seconds=time.perf_counter() - start), None
    return Outcome(task.clip_id, task.split, task.path, True, notes=tuple(notes), frames=frames,
                   seconds=time.perf_counter() - start, info=info), example


def process_star(args: tuple) -> tuple[Outcome, dict[str, Any] | None]:
    """`process_task(*args)`, for process pools (which pass one argument)."""
    return process_task(*args)
