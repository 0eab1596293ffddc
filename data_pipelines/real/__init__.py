"""Real talking-head datasets (VoxCeleb2, VoxCeleb1, MEAD) from raw downloads to ArrayRecord TFDS.

    from data_pipelines import real
    path = real.prepare("voxceleb2", manual_dir="raw/vox2", data_dir="data/tfds")
    source = datasets.clip_source(path, "train")   # data_pipelines.datasets; same schema as SynthTalk

Command line: `python -m data_pipelines.real {prepare,merge,fixtures} --help`; docs/real_data.md.
"""

from __future__ import annotations

import os
from typing import Any

from data_pipelines.real.preprocess import PreprocessOptions

DATASETS = ("voxceleb2", "voxceleb1", "mead")
DEFAULT_CONFIGS = {"voxceleb2": "default", "voxceleb1": "default", "mead": "front"}

# The builder modules import tensorflow_datasets, so the functions below import them on use: code
# that needs only the per-video preprocessing (inference's face crop) never loads tfds.


def builder_class(dataset: str):
    """The TFDS builder class of a real dataset by name."""
    if dataset == "voxceleb2":
        from data_pipelines.real.voxceleb2 import Voxceleb2 as cls
    elif dataset == "voxceleb1":
        from data_pipelines.real.voxceleb1 import Voxceleb1 as cls
    elif dataset == "mead":
        from data_pipelines.real.mead import Mead as cls
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return cls


def make_builder(dataset: str, data_dir: str, *, config: str | None = None, options: PreprocessOptions | None = None,
                 num_workers: int = 1):
    """A builder of `dataset` writing ArrayRecord files under `data_dir`."""
    from data_pipelines.real.builder import BuildSettings

    cls = builder_class(dataset)
    kwargs: dict[str, Any] = {}
    if cls.BUILDER_CONFIGS:
        names = [c.name for c in cls.BUILDER_CONFIGS]
        name = config or names[0]
        if name not in names:
            raise ValueError(f"{dataset} has no config {name!r}; choose one of {', '.join(names)}")
        kwargs["config"] = name
    elif config not in (None, "default"):
        raise ValueError(f"{dataset} has a single config; drop --config={config!r}")
    builder = cls(data_dir=os.path.abspath(os.path.expanduser(data_dir)), file_format="array_record", **kwargs)
    builder.settings = BuildSettings(options=options or PreprocessOptions(), num_workers=num_workers)
    return builder


def prepare(dataset: str, manual_dir: str, data_dir: str, *, config: str | None = None,
            options: PreprocessOptions | None = None, num_workers: int = 1, beam_runner: Any = None,
            beam_options: Any = None) -> str:
    """Builds `dataset` from the raw files in `manual_dir`; returns the dataset directory."""
    from data_pipelines.real import builder as builder_lib

    builder = make_builder(dataset, data_dir, config=config, options=options, num_workers=num_workers)
    return builder_lib.prepare(builder, manual_dir, beam_runner=beam_runner, beam_options=beam_options)
