"""The TFDS builder shared by the real datasets: scan a manual download, preprocess each file, write.

A dataset module (voxceleb2.py, voxceleb1.py, mead.py) only says how its raw layout maps to
`Task`s (one per clip: paths, speaker, labels, split). Everything else is here:

- `process_task(task, manual_dir, options, speakers)` turns one Task into an `Outcome` and, when
  kept, a schema example (data_pipelines.schema). It is the single per-video function that the
  plain build (a process pool), `--shard i/N` workers and Apache Beam all run.
- `RealTalkBuilder` is an ArrayRecord `GeneratorBasedBuilder` without TensorFlow (like SynthTalk).
  Its `_generate_examples` yields from a process pool, returns a Beam PTransform when a Beam
  runner is configured, or reads the intermediates of a sharded run (`merge`).
- Every file's outcome goes to `<dataset dir>/preprocess_report.json` (report.py). tfds writes the
  dataset into a temporary directory and renames it when complete, and the report is written
  after that rename, so a directory with `dataset_info.json` is always a complete dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import build, schema
from data_pipelines.real import report as report_lib
from data_pipelines.real.preprocess import PreprocessOptions, SkipClip, preprocess_audio, preprocess_video

VERSION = "1.0.0"
REPORT_NAME = "preprocess_report.json"


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


def example_from_clip(task: Task, clip, speaker: int, options: PreprocessOptions) -> dict[str, Any]:
    """The schema example of a preprocessed video clip (see preprocess.py for the 3-D fields)."""
    return build.schema_example(
        **_labels(task, speaker, options),
        audio=clip.audio,
        frames=clip.frames,
        landmarks_2d=clip.landmarks,
        landmarks_3d=np.concatenate([clip.landmarks, np.zeros_like(clip.landmarks[..., :1])], axis=-1),
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


def _process_star(args: tuple) -> tuple[Outcome, dict[str, Any] | None]:
    return process_task(*args)


@dataclasses.dataclass
class BuildSettings:
    """How a build runs (not what it produces): set by `make_builder`."""

    options: PreprocessOptions = dataclasses.field(default_factory=PreprocessOptions)
    num_workers: int = 1  # processes for the plain build; 0 = one per core
    merge_from: str | None = None  # a sharded run's work directory: merge its intermediates
    outcome_dir: str | None = None  # Beam: where workers drop one outcome file per clip


class RealTalkBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of the real-data builders; subclasses define `name`, instructions and `scan`."""

    RELEASE_NOTES = {VERSION: "First release: dlib landmarks, 256 px stable crops, 25 fps / 16 kHz."}
    VERSION = tfds.core.Version(VERSION)
    code_path = None  # nothing to download: no checksums file to locate
    settings: BuildSettings = BuildSettings()
    _outcomes: list[Outcome]

    # ------------------------------------------------------------------ to override
    def scan(self, manual_dir: str) -> list[Task]:
        """Every clip of the raw layout under `manual_dir` (sorted by split, clip_id)."""
        raise NotImplementedError

    def extra_metadata(self, manual_dir: str, tasks: list[Task]) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ tfds
    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=schema.features(),
            metadata=tfds.core.MetadataDict(),
            # Examples are generated in sorted clip order; tfds' shuffle would only cost time.
            disable_shuffling=True,
        )

    def tasks(self, manual_dir: str) -> list[Task]:
        manual_dir = os.fspath(manual_dir)
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(
                f"manual_dir {manual_dir!r} does not exist. {self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
        tasks = sorted(self.scan(manual_dir), key=lambda t: (t.split, t.clip_id))
        if not tasks:
            raise FileNotFoundError(
                f"no {self.name} files found under {manual_dir!r}. {self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
        return tasks

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        tasks = self.tasks(manual_dir)
        speakers = speaker_index(tasks)
        self._outcomes = []
        self._manual_dir = manual_dir
        self.info.metadata.update(
            speakers=sorted(speakers, key=speakers.get),
            preprocess_options=dataclasses.asdict(self.settings.options),
            **self.extra_metadata(manual_dir, tasks),
        )
        by_split: dict[str, list[Task]] = {}
        for task in tasks:
            by_split.setdefault(task.split, []).append(task)
        return {split: self._generate_examples(split_tasks, manual_dir, speakers) for split, split_tasks in by_split.items()}

    def _generate_examples(self, tasks: list[Task], manual_dir: str, speakers: dict[str, int]):
        if self.settings.merge_from:
            from data_pipelines.real import sharded

            return sharded.read_intermediates(self.settings.merge_from, tasks, self._outcomes)
        if self._beam_runner_configured():
            from data_pipelines.real import beam

            return beam.examples_transform(tasks, manual_dir, self.settings.options, speakers, self.settings.outcome_dir)
        return self._plain(tasks, manual_dir, speakers)

    def _beam_runner_configured(self) -> bool:
        config = getattr(self, "_download_config_for_beam", None)
        return bool(config is not None and (config.beam_runner is not None or config.beam_options is not None))

    def _download_and_prepare(self, dl_manager, download_config=None, **kwargs):
        # Remembered so that _generate_examples can tell a Beam build from a plain one.
        self._download_config_for_beam = download_config
        return super()._download_and_prepare(dl_manager, download_config=download_config, **kwargs)

    def _plain(self, tasks: list[Task], manual_dir: str, speakers: dict[str, int]) -> Iterator[tuple[str, dict[str, Any]]]:
        args = [(task, manual_dir, self.settings.options, speakers) for task in tasks]
        with build.process_pool(self.settings.num_workers if len(args) > 1 else 1) as pool:
            yield from self._collect(build.ordered_map(pool, _process_star, args))

    def _collect(self, results: Iterable) -> Iterator[tuple[str, dict[str, Any]]]:
        for outcome, example in results:
            self._outcomes.append(outcome)
            if example is not None:
                yield outcome.clip_id, example


def config_name(builder) -> str:
    """The builder's config name ("default" for builders without configs)."""
    return builder.builder_config.name if builder.builder_config is not None else "default"


def speaker_index(tasks: list[Task]) -> dict[str, int]:
    """speaker_id -> index in the sorted list of every speaker the scan found (skipped files included)."""
    return {s: i for i, s in enumerate(sorted({t.speaker_id for t in tasks}))}


def prepare(
    builder: RealTalkBuilder,
    manual_dir: str,
    *,
    beam_runner: Any = None,
    beam_options: Any = None,
) -> str:
    """Builds the dataset (plain, Beam or merge per `builder.settings`); writes the report; returns the dir."""
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    builder.tasks(manual_dir)  # clear error before tfds creates anything
    if is_built(builder.data_dir):
        print(f"{builder.name}/{config_name(builder)}: already built at {builder.data_dir}", flush=True)
        return builder.data_dir
    if beam_runner is not None or beam_options is not None:
        from data_pipelines.real import beam

        builder.settings.outcome_dir = beam.fresh_outcome_dir(builder)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, beam_runner=beam_runner, beam_options=beam_options)
    start = time.perf_counter()
    builder.download_and_prepare(download_config=config)
    elapsed = time.perf_counter() - start
    outcomes = list(getattr(builder, "_outcomes", []))
    if builder.settings.outcome_dir:
        outcomes += report_lib.read_outcome_dir(builder.settings.outcome_dir)
    report = report_lib.build_report(builder.name, config_name(builder), manual_dir, outcomes, elapsed,
                                     extra=getattr(builder, "report_extra", lambda o: {})(outcomes))
    report_lib.write_report(os.path.join(builder.data_dir, REPORT_NAME), report)
    kept = report["counts"]["kept"]
    print(f"{builder.name}: {kept} clips kept, {report['counts']['skipped']} skipped in {elapsed:.1f} s -> {builder.data_dir}", flush=True)
    return builder.data_dir


def is_built(dataset_dir: str) -> bool:
    """True once tfds renamed a complete build into place and its report was written."""
    return build.is_built(dataset_dir, REPORT_NAME)


def load_report(dataset_dir: str) -> dict[str, Any]:
    with open(os.path.join(dataset_dir, REPORT_NAME)) as f:
        return json.load(f)
