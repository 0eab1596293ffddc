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

from data_pipelines import build
from data_pipelines.synthtalk import builder as synthtalk_builder
from data_pipelines.synthtalk.face import Camera as SynthTalkCamera
from data_pipelines.synthtalk.specs import parse_name
from macl_jax.geometry.camera import Orthographic, Pinhole

DATASETS = ("synthtalk", "tfds")


def dataset_dir(data: Any) -> str:
    """The directory of the configured dataset, building SynthTalk there if needed."""
    name = data.dataset
    if name == "synthtalk":
        return synthtalk_builder.build(data.variant, data.dir, num_workers=0)
    if name == "tfds":
        require_prepared(data.dir, what=f"config.data.dir={data.dir!r}")
        return data.dir
    raise ValueError(f"unknown config.data.dataset={name!r}; choose one of {', '.join(DATASETS)}")


def dataset_camera(data: Any) -> Pinhole | Orthographic:
    """How the configured dataset's 3-D landmarks (posed by its head poses) project onto its stored frames.

    SynthTalk: its pinhole camera at the variant's image size. Real datasets store x, y in crop
    pixels with a fitted depth (data_pipelines/real/preprocess.py), so the projection is the
    identity on x, y.
    """
    if data.dataset == "synthtalk":
        size, camera = parse_name(data.variant).image_size, SynthTalkCamera()
        centre = camera.center_px(size)
        return Pinhole(camera.focal_px(size), centre, centre, camera.distance, camera.look_y)
    return Orthographic()


def require_prepared(directory: str, what: str = "") -> None:
    """Raises a FileNotFoundError saying how to prepare `directory` when it holds no complete dataset."""
    if not build.is_built(directory):
        raise FileNotFoundError(
            f"{what or directory} is not a prepared TFDS dataset (no dataset_info.json). Point it at the versioned "
            "directory a builder wrote (e.g. <data_dir>/voxceleb2/1.0.0 or <data_dir>/mead/front/1.0.0), or build SynthTalk with "
            "`python -m data_pipelines.synthtalk build --variant voxceleb_like_tiny --data_dir <dir>`"
        )


def clip_source(directory: str, split: str):
    """Random-access source of schema examples of one split (frames still JPEG bytes)."""
    available = splits(directory)
    if split not in available:
        raise ValueError(f"split {split!r} is not in {directory}; it has {', '.join(sorted(available))}")
    # Imported here: reading needs tfds, opening a config does not.
    import tensorflow_datasets as tfds

    return tfds.builder_from_directory(directory).as_data_source(split=split)


def splits(directory: str) -> dict[str, int]:
    """Split name -> number of clips, from the dataset's info file."""
    require_prepared(directory)
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
