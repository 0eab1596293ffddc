"""TFDS builder of SynthTalk (ArrayRecord files, no TensorFlow needed to build or read).

    from data_pipelines.synthtalk import builder
    path = builder.build("voxceleb_like_tiny", data_dir="~/tensorflow_datasets")
    source = datasets.clip_source(path, "train")    # data_pipelines.datasets: random access, feeds grain

Configs: `voxceleb_like_{tiny,default}` and `mead_like_{tiny,default}` (`_seed<N>` for other seeds).
Clips are generated in worker processes in a fixed order and written without tfds' shuffle, so a
build is byte-identical for a given seed whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds

from data_pipelines import build as build_lib
from data_pipelines import schema
from data_pipelines.synthtalk import speech
from data_pipelines.synthtalk.clip import generate_clip
from data_pipelines.synthtalk.speakers import make_speaker
from data_pipelines.synthtalk.specs import KINDS, SIZES, SPLITS, VariantSpec, parse_name, variant

_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class SynthTalkConfig(tfds.core.BuilderConfig):
    spec: VariantSpec | None = None


def _config(spec: VariantSpec) -> SynthTalkConfig:
    return SynthTalkConfig(
        name=spec.name,
        version=_VERSION,
        description=f"{spec.kind} SynthTalk, {spec.size}: {spec.num_train_speakers} training + "
        f"{spec.num_test_speakers} test speakers, {spec.num_frames}-frame clips at {spec.image_size} px",
        spec=spec,
    )


def _make_example(task: tuple[VariantSpec, str, int, int]) -> tuple[str, dict[str, Any]]:
    spec, split, speaker, clip_index = task
    clip = generate_clip(spec, split, speaker, clip_index)
    return clip.clip_id, build_lib.schema_example(
        clip_id=clip.clip_id,
        speaker_id=clip.speaker.speaker_id,
        speaker=clip.speaker.index,
        emotion=clip.emotion,
        intensity=clip.intensity,
        fps=spec.fps,
        sample_rate=spec.sample_rate,
        jpeg_quality=spec.jpeg_quality,
        audio=clip.audio,
        frames=clip.frames,
        landmarks_2d=clip.landmarks_2d,
        landmarks_3d=clip.landmarks_3d,
        head_rotation=clip.head_rotation,
        head_translation=clip.head_translation,
        visemes=clip.visemes,
        phonemes=clip.alignment.phonemes,
        phoneme_start=clip.alignment.start,
        phoneme_end=clip.alignment.end,
    )


def _tasks(spec: VariantSpec, split: str) -> list[tuple[VariantSpec, str, int, int]]:
    return [
        (spec, split, speaker, clip)
        for speaker in spec.speakers(split)
        for clip in range(len(spec.clip_conditions(split)))
    ]


class SynthTalk(tfds.core.GeneratorBasedBuilder):
    """SynthTalk: procedural talking heads with exact ground truth."""

    name = "synthtalk"
    VERSION = tfds.core.Version(_VERSION)
    RELEASE_NOTES = {_VERSION: "First release."}
    BUILDER_CONFIGS = [_config(variant(kind, size)) for kind in KINDS for size in SIZES]
    num_workers = 0  # generator processes; 0 = one per CPU core
    pool = None  # set by build(): one process pool serves all splits
    # tfds locates a builder's source file to find download checksums; SynthTalk downloads
    # nothing, and the lookup needs the optional importlib_resources package for some installs.
    code_path = None

    @property
    def spec(self) -> VariantSpec:
        return self.builder_config.spec

    def _info(self) -> tfds.core.DatasetInfo:
        spec = self.spec
        speakers = [make_speaker(spec.seed, spec.kind, i) for i in range(spec.num_train_speakers + spec.num_test_speakers)]
        metadata = tfds.core.MetadataDict(
            variant={k: v for k, v in dataclasses.asdict(spec).items()},
            speakers=[s.speaker_id for s in speakers],
            speaker_details=[s.describe() for s in speakers],
            phonemes=[p.symbol for p in speech.INVENTORY],
            phoneme_kinds=[p.kind for p in speech.INVENTORY],
            viseme_names=list(speech.VISEME_NAMES),
        )
        return tfds.core.DatasetInfo(
            builder=self,
            # Stored in every build's dataset_info.json: editing the module docstring changes new builds' files.
            description=__doc__,
            features=schema.features(),
            metadata=metadata,
            # Generation order is already a fixed function of the seed; tfds' shuffle would only
            # cost time.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        # A variant may leave a split empty (e.g. no validation clips); tfds cannot write those.
        return {split: self._generate_examples(split) for split in SPLITS if self.spec.num_clips(split)}

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        tasks = _tasks(self.spec, split)
        if self.pool is None:
            with build_lib.process_pool(self.num_workers) as pool:
                yield from self._map(pool, tasks)
        else:
            yield from self._map(self.pool, tasks)

    def _map(self, pool, tasks):
        chunksize = max(1, len(tasks) // (8 * build_lib.worker_count(self.num_workers)))
        return build_lib.ordered_map(pool, _make_example, tasks, chunksize)


def builder(name: str | VariantSpec, data_dir: str, num_workers: int = 0) -> SynthTalk:
    spec = name if isinstance(name, VariantSpec) else parse_name(name)
    registered = {c.name: c for c in SynthTalk.BUILDER_CONFIGS}
    # tfds refuses a new config object under a registered name; other specs get their own config.
    config = spec.name if spec.name in registered else _config(spec)
    b = SynthTalk(config=config, data_dir=os.path.abspath(os.path.expanduser(data_dir)), file_format="array_record")
    b.num_workers = num_workers
    return b


def build(name: str | VariantSpec, data_dir: str, num_workers: int = 0) -> str:
    """Builds the variant under `data_dir` if it is not there yet; returns its directory.

    tfds writes into a temporary directory and renames it when complete, so an interrupted build
    leaves no half-written dataset behind (the next call starts over). Processes that share
    `data_dir` (the processes of a job on one host, or hosts on NFS) serialise on a lock file:
    one builds, the others wait and reuse it. On object stores without locks (gs://), build once
    beforehand with `python -m data_pipelines.synthtalk build`; the build is deterministic, so
    hosts may also each build their own local copy. ("Deterministic" is field for field: within one
    process two builds are byte-identical, but tfds writes each example's feature map in protobuf map
    order, which differs between processes.)
    """
    b = builder(name, data_dir, num_workers)
    if build_lib.is_built(b.data_dir):
        return b.data_dir
    os.makedirs(os.path.dirname(os.path.dirname(b.data_dir)), exist_ok=True)
    lock_path = os.path.join(os.path.dirname(os.path.dirname(b.data_dir)), f".{b.builder_config.name}.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        try:
            if not build_lib.is_built(b.data_dir):
                start = time.perf_counter()
                with build_lib.process_pool(num_workers) as b.pool:
                    b.download_and_prepare()
                elapsed = time.perf_counter() - start
                print(f"SynthTalk {b.builder_config.name}: built in {elapsed:.1f} s -> {b.data_dir}", flush=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return b.data_dir

