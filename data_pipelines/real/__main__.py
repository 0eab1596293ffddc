"""Real-data command line.

    python -m data_pipelines.real prepare --dataset voxceleb2 --manual_dir RAW --data_dir OUT [--workers 8]
    python -m data_pipelines.real prepare --dataset voxceleb2 --manual_dir RAW --data_dir OUT --shard 3/16
    python -m data_pipelines.real merge   --dataset voxceleb2 --manual_dir RAW --data_dir OUT
    python -m data_pipelines.real prepare --dataset mead --config front --manual_dir RAW --data_dir OUT \\
        --beam_runner DirectRunner [--beam_pipeline_options "--direct_num_workers=4,--direct_running_mode=multi_processing"]
    python -m data_pipelines.real fixtures --dataset voxceleb2 --out /tmp/raw_vox2
"""

from __future__ import annotations

import sys

from absl import app, flags

from data_pipelines import real
from data_pipelines.real import beam, fixtures, sharded
from data_pipelines.real import builder as builder_lib
from data_pipelines.real.preprocess import PreprocessOptions

_DATASET = flags.DEFINE_enum("dataset", "voxceleb2", list(real.DATASETS), "dataset to prepare")
_CONFIG = flags.DEFINE_string("config", None, "builder config (mead: front | all_views)")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "the raw download, in its distributed layout")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "TFDS data directory to write into")
_WORKERS = flags.DEFINE_integer("workers", 0, "plain build: preprocessing processes (0 = one per core)")
_SHARD = flags.DEFINE_string("shard", None, "i/N: preprocess only this worker's 1/N of the clips into an intermediate")
_BEAM_RUNNER = flags.DEFINE_string("beam_runner", None, "Apache Beam runner (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner)")
_BEAM_OPTIONS = flags.DEFINE_list("beam_pipeline_options", [], "comma-separated Beam options without '--', e.g. project=p,region=r")
_MIN_FRAMES = flags.DEFINE_integer("min_frames", 64, "clips with fewer 25 fps frames are skipped")
_CROP = flags.DEFINE_integer("crop_size", 256, "face crop side in pixels")
_OUT = flags.DEFINE_string("out", None, "fixtures: directory to write the raw fixture into")

_COMMANDS = ("prepare", "merge", "fixtures")


def _builder(num_workers: int = 1):
    options = PreprocessOptions(min_frames=_MIN_FRAMES.value, crop_size=_CROP.value)
    return real.make_builder(_DATASET.value, _DATA_DIR.value, config=_CONFIG.value, options=options, num_workers=num_workers)


def _require(flag, name: str):
    if not flag.value:
        raise ValueError(f"--{name} is required")
    return flag.value


def _run(command: str) -> int:
    if command == "fixtures":
        print(fixtures.make(_DATASET.value, _require(_OUT, "out")))
        return 0
    manual_dir = _require(_MANUAL_DIR, "manual_dir")
    if command == "merge":
        b = _builder()
        b.settings.merge_from = sharded.shard_dir(b)
        sharded.check_complete(b.settings.merge_from)
        print(builder_lib.prepare(b, manual_dir))
        return 0
    if _SHARD.value and _BEAM_RUNNER.value:
        raise ValueError("--shard and --beam_runner are alternatives; pass one")
    if _SHARD.value:
        index, count = sharded.parse_shard(_SHARD.value)
        print(sharded.prepare_shard(_builder(), manual_dir, index, count))
        return 0
    if _BEAM_RUNNER.value:
        options = beam.pipeline_options(_BEAM_RUNNER.value, [f"--{o}" for o in _BEAM_OPTIONS.value])
        print(builder_lib.prepare(_builder(), manual_dir, beam_options=options))
        return 0
    print(builder_lib.prepare(_builder(_WORKERS.value), manual_dir))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in _COMMANDS:
        print(f"usage: python -m data_pipelines.real {{{'|'.join(_COMMANDS)}}} [--flags]; see --helpfull", file=sys.stderr)
        return 2
    try:
        return _run(argv[1])
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    app.run(main)
