"""The TFDS builder shared by the real datasets: scan a manual download, preprocess each file, write.

A dataset module (voxceleb2.py, voxceleb1.py, mead.py) only says how its raw layout maps to
`Task`s (one per clip: paths, speaker, labels, split). Everything else is here and below:

- tasks.py: `Task`, `Outcome` and the per-video function `process_task` that the plain build (a
  process pool), `--shard i/N` workers (sharded.py) and Apache Beam (beam.py) all run.
- `RealTalkBuilder` is an ArrayRecord `GeneratorBasedBuilder` without TensorFlow (like SynthTalk).
  Its `_generate_examples` yields from a process pool, returns a Beam PTransform when a Beam
  runner is configured, or reads the intermediates of a sharded run (`merge`).
- Every file's outcome goes to `<dataset dir>/preprocess_report.json` (report.py). tfds writes the
  dataset into a temporary directory and renames it when complete, and the report is written
  after that rename, so a directory with `dataset_info.json` and the report is a complete dataset.

The modules of this package import one way, each only from those listed before it: preprocess,
tasks, report, sharded, beam, builder, the dataset modules, then the package's `prepare` and the
command line.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import tensorflow_datasets as tfds

from data_pipelines import build, schema
from data_pipelines.real import beam, sharded
from data_pipelines.real import report as report_lib
from data_pipelines.real.preprocess import PreprocessOptions
from data_pipelines.real.sharded import config_name
from data_pipelines.real.tasks import Outcome, Task, process_star, speaker_index

VERSION = "1.0.0"


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
            return sharded.read_intermediates(self.settings.merge_from, tasks, self._outcomes)
        if self._beam_runner_configured():
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
            yield from self._collect(build.ordered_map(pool, process_star, args))

    def _collect(self, results: Iterable) -> Iterator[tuple[str, dict[str, Any]]]:
        for outcome, example in results:
            self._outcomes.append(outcome)
            if example is not None:
                yield outcome.clip_id, example


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
    if build.is_built(builder.data_dir, report_lib.REPORT_NAME):
        print(f"{builder.name}/{config_name(builder)}: already built at {builder.data_dir}", flush=True)
        return builder.data_dir
    if beam_runner is not None or beam_options is not None:
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
    report_lib.write_report(os.path.join(builder.data_dir, report_lib.REPORT_NAME), report)
    kept = report["counts"]["kept"]
    print(f"{builder.name}: {kept} clips kept, {report['counts']['skipped']} skipped in {elapsed:.1f} s -> {builder.data_dir}", flush=True)
    return builder.data_dir

