"""Opening the configured dataset from config.data."""

from __future__ import annotations

from pathlib import Path

import ml_collections
import pytest

from data_pipelines import datasets


def _data(**kw):
    return ml_collections.ConfigDict({"dataset": "synthtalk", "variant": "voxceleb_like_tiny", "dir": "unused", **kw})


def test_synthtalk_variant_resolves_to_its_existing_build(tiny_voxceleb):
    _, path, _ = tiny_voxceleb
    data_dir = Path(path).parents[2]  # <data_dir>/synthtalk/<variant>/<version>
    assert datasets.dataset_dir(_data(variant="voxceleb_like_tiny", dir=str(data_dir))) == path


def test_bad_synthtalk_variants_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"image_size=32 must be one of \(64, 128, 256\)"):
        datasets.dataset_dir(_data(variant="voxceleb_like_tiny_32px_seed3", dir=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown SynthTalk variant 'nonsense_tiny'"):
        datasets.dataset_dir(_data(variant="nonsense_tiny", dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # nothing written for a rejected config


def test_prepared_directory_splits_and_metadata(tiny_voxceleb):
    spec, path, _ = tiny_voxceleb
    data = _data(dataset="tfds", dir=path)
    assert datasets.dataset_dir(data) == path
    assert datasets.splits(path) == {s: spec.num_clips(s) for s in ("train", "validation", "test")}
    assert len(datasets.clip_source(path, "test")) == spec.num_clips("test")
    assert len(datasets.metadata(path)["speakers"]) == spec.num_train_speakers + spec.num_test_speakers
    with pytest.raises(ValueError, match="split 'dev' is not in"):
        datasets.clip_source(path, "dev")


def test_configured_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a prepared TFDS dataset"):
        datasets.dataset_dir(_data(dataset="tfds", dir=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown config.data.dataset='voxceleb'; choose one of synthtalk, tfds"):
        datasets.dataset_dir(_data(dataset="voxceleb"))
