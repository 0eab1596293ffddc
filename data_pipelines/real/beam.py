"""Apache Beam preparation: the same per-video function (tasks.process_task) on any runner.

TFDS runs Beam when `DownloadConfig(beam_runner=..., beam_options=...)` is set: the builder's
`_generate_examples` then returns `beam.Create(tasks) | beam.FlatMap(process)` and TFDS writes the
ArrayRecord shards and dataset_info from the pipeline. Skipped files cannot flow back through
the examples PCollection, so every worker writes one small outcome file per clip into an outcome
directory (on storage all workers and the launcher share), merged into `preprocess_report.json`
when the pipeline is done. See docs/real_data.md for Dataflow, Flink and Spark options.
"""

from __future__ import annotations

import os
import shutil

from data_pipelines.real.preprocess import PreprocessOptions
from data_pipelines.real.report import write_outcome_file
from data_pipelines.real.sharded import work_dir
from data_pipelines.real.tasks import Task, process_task

# apache_beam is an optional dependency (the `beam` extra): imported only where a Beam build needs it.


def _process(indexed_task: tuple[int, Task], manual_dir: str, options: PreprocessOptions, speakers: dict[str, int],
             outcome_dir: str):
    index, task = indexed_task
    outcome, example = process_task(task, manual_dir, options, speakers)
    write_outcome_file(outcome_dir, outcome)
    if example is not None:
        # TFDS's Beam writer without shuffling orders examples by integer key: the task's
        # position in the sorted task list gives the plain build's order.
        yield index, example


def examples_transform(tasks: list[Task], manual_dir: str, options: PreprocessOptions, speakers: dict[str, int],
                       outcome_dir: str | None):
    """The PTransform TFDS applies to its pipeline for one split: tasks -> (key, example)."""
    import apache_beam as beam

    if not outcome_dir:
        raise ValueError("a Beam build needs an outcome directory; build through data_pipelines.real.prepare")
    split = tasks[0].split if tasks else "empty"
    # Reshuffle spreads the (cheap to list, expensive to process) tasks over workers.
    return (
        f"Tasks_{split}" >> beam.Create(list(enumerate(tasks)))
        | f"Spread_{split}" >> beam.Reshuffle()
        | f"Preprocess_{split}" >> beam.FlatMap(_process, manual_dir=manual_dir, options=options, speakers=speakers,
                                                 outcome_dir=outcome_dir)
    )


def fresh_outcome_dir(builder) -> str:
    """An empty outcome directory for a build: `<data_dir>/_work/<name>/<config>/<version>/beam_outcomes`."""
    path = os.path.join(work_dir(builder), "beam_outcomes")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def pipeline_options(runner: str, flags: list[str]):
    """`beam.options.pipeline_options.PipelineOptions` from `--beam_pipeline_options` style flags."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions([f"--runner={runner}", *flags])
