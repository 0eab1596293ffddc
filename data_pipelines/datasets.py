"""Opening the configured talking-head dataset: one entry point for every trainer.

A trainer's `config.data` names the dataset; this module returns its clip sources, building
SynthTalk on first use. Trainers then window the clips (data_pipelines.windows) and batch them
(data_pipelines.loader), never caring which dataset it is.

    config.data.dataset = "synthtalk"             # or "tfds": a prepared dataset directory
    config.data.variant = "voxceleb_like_tiny"    # synthtalk: <kind>_<size>[_<N>px][_seed<N>]
    config.data.dir = "data/tfds"                 # synthtalk: where builds live; tfds: the dataset directory
"""

from __future__ import annotations

import json
import os
from typing import Any

from data_pipelines.synthtalk import builder as synthtalk_builder

DATASETS = ("synthtalk", "tfds")


def dataset_dir(data: Any) -> str:
    """The directory of the configured dataset, building SynthTalk there if needed."""
    name = data.dataset
    if name == "synthtalk":
        return synthtalk_builder.build(data.variant, data.dir, num_workers=0)
    if name == "tfds":
        if not os.path.exists(os.path.join(data.dir, "dataset_info.json")):
            raise FileNotFoundError(
                f"config.data.dir={data.dir!r} is not a prepared TFDS dataset (no dataset_info.json). Point it at the "
                "versioned directory a builder wrote, e.g. <data_dir>/voxceleb2/default/1.0.0"
            )
        return data.dir
    raise ValueError(f"unknown config.data.dataset={name!r}; choose one of {', '.join(DATASETS)}")


def clip_source(directory: str, split: str):
    """Random-access source of schema examples of one split."""
    available = splits(directory)
    if split not in available:
        raise ValueError(f"split {split!r} is not in {directory}; it has {', '.join(sorted(available))}")
    return synthtalk_builder.data_source(directory, split)


def splits(directory: str) -> dict[str, int]:
    """Split name -> number of clips, from the dataset's info file."""
    with open(os.path.join(directory, "dataset_info.json")) as f:
        info = json.load(f)
    return {s["name"]: sum(int(n) for n in s.get("shardLengths", [])) for s in info.get("splits", [])}


def metadata(directory: str) -> dict[str, Any]:
    """The dataset's metadata (speakers, phonemes, variant ...), {} when it has none."""
    path = os.path.join(directory, "metadata.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)
