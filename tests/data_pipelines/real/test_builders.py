"""The three builders on their raw fixtures: every good clip present, every broken file reported."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data_pipelines import build, datasets, schema
from data_pipelines.real import fixtures, tasks
from data_pipelines.real import report as report_lib
from data_pipelines.windows import MDNClips, decode_frames

FIELDS = set(schema.features().keys())


def _check_report(path: str, manifest: dict) -> dict:
    report = report_lib.load_report(path)
    got = {f["path"]: reason for reason, entry in report["skipped"].items() for f in entry["files"]}
    assert got == manifest["expected_skips"]
    for reason, entry in report["skipped"].items():
        assert entry["count"] == len(entry["files"]) and entry["description"]
    for clip_id, notes in manifest["expected_notes"].items():
        for note in notes:
            assert clip_id in report["notes"][note]["clips"], (clip_id, note)
    assert report["counts"]["kept"] == len(manifest["expected_clips"])
    return report


def _check_splits(path: str, manifest: dict, read_split) -> dict[str, dict]:
    expected_splits = {}
    for clip_id, split in manifest["expected_clips"].items():
        expected_splits.setdefault(split, set()).add(clip_id)
    assert datasets.splits(path) == {s: len(c) for s, c in expected_splits.items()}
    by_id = {}
    for split, clip_ids in expected_splits.items():
        examples = read_split(path, split)
        ids = [schema.as_text(e["clip_id"]) for e in examples]
        assert set(ids) == clip_ids and ids == sorted(ids)
        for e in examples:
            assert set(e) == FIELDS
            by_id[schema.as_text(e["clip_id"])] = e
    return by_id


def _checked_build(dataset: str, raw_root, plain_build, read_split):
    """The plain build of a fixture, its report and splits checked against the manifest."""
    root = raw_root(dataset)
    manifest = fixtures.load_manifest(root)
    path = plain_build(dataset)
    report = _check_report(path, manifest)
    return root, manifest, path, report, _check_splits(path, manifest, read_split)


def test_voxceleb2_build(raw_root, plain_build, read_split):
    root, manifest, path, report, examples = _checked_build("voxceleb2", raw_root, plain_build, read_split)
    speakers = datasets.metadata(path)["speakers"]
    assert speakers == sorted(speakers) and "id00016" in speakers  # skipped speakers keep their index
    for clip_id, example in examples.items():
        t = len(example["frames"])
        assert example["speaker"] == speakers.index(schema.as_text(example["speaker_id"]))
        assert example["fps"] == 25 and example["sample_rate"] == 16000 and len(example["audio"]) == t * 640
        assert example["landmarks_3d"].shape == (t, 68, 3)
        np.testing.assert_array_equal(example["landmarks_3d"][..., :2], example["landmarks_2d"])
        # Depth of the fitted mean face: the nose tip nearer the camera than the jaw's ends.
        depth = example["landmarks_3d"][..., 2]
        assert np.all(depth[:, 30] > depth[:, [0, 16]].max(axis=1) + 0.1 * np.ptp(example["landmarks_2d"][..., 0], axis=1))
        np.testing.assert_allclose(np.linalg.det(example["head_rotation"]), 1.0, atol=1e-4)
        assert example["visemes"].shape == (0, 4) and example["phonemes"].shape == (0,)
        # Stored landmarks against the known animation, through the crop box in the report.
        info = report["clips"][clip_id]
        truth = fixtures.truth_for_clip(os.path.join(root, manifest["truth"][clip_id]), tuple(info["crop_box"]),
                                        info["start_frame"], t)
        error = np.linalg.norm(example["landmarks_2d"] - truth["landmarks"], axis=-1)
        assert np.median(error) < 3.0, (clip_id, np.median(error))
    frames = decode_frames(examples["id00012/21Uxsk56VDQ/00001"]["frames"], [0, 29])
    assert frames.shape == (2, 256, 256, 3)


def test_voxceleb2_clips_feed_the_model_windows(plain_build, read_split):
    example = read_split(plain_build("voxceleb2"), "train")[0]
    out = MDNClips(clip_frames=24, train=False)(example, np.random.default_rng(0))
    assert out["audio"].shape == (20, 20, 80) and out["aligned"].shape == (20, 68, 2)
    assert np.all(np.isfinite(out["angle"]))


def test_mead_build(raw_root, plain_build, read_split):
    _, manifest, _, _, examples = _checked_build("mead", raw_root, plain_build, read_split)
    for clip_id in manifest["other_views"]:
        assert clip_id not in examples  # the front config leaves other views out
    angry = examples["M003/front/angry/level_3/001"]
    assert schema.EMOTIONS[angry["emotion"]] == "angry" and angry["intensity"] == 3
    # 1.2 s at 30 fps -> 30 frames at 25 fps; 44.1 kHz stereo audio -> 16 kHz mono.
    assert len(angry["frames"]) == 30 and len(angry["audio"]) == 30 * 640
    assert schema.EMOTIONS[examples["W021/front/neutral/level_1/003"]["emotion"]] == "neutral"


def test_voxceleb1_build_and_trials(raw_root, plain_build, read_split):
    _, manifest, path, report, examples = _checked_build("voxceleb1", raw_root, plain_build, read_split)
    trials = datasets.metadata(path)["trials"]["veri_test"]
    assert len(trials) == manifest["trials"]
    assert trials[2] == [1, "id10271/1gtz-CUIygI/00001", "id10271/1gtz-CUIygI/00002"]  # prefix normalised
    assert all(t[1] in examples and t[2] in examples for t in trials)
    assert report["trials"]["veri_test"]["with_missing_clips"] == 0
    example = examples["id10271/1gtz-CUIygI/00002"]
    assert len(example["frames"]) == 0 and example["landmarks_2d"].shape == (0, 68, 2)
    assert len(example["audio"]) == pytest.approx(1.5 * 16000, abs=50)  # 44.1 kHz stereo resampled


def test_missing_manual_dir_explains_the_layout(tmp_path):
    from data_pipelines import real

    with pytest.raises(FileNotFoundError, match="dev/mp4/idXXXXX"):
        real.prepare("voxceleb2", str(tmp_path / "nowhere"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no mead files"):
        real.prepare("mead", str(tmp_path / "empty"), str(tmp_path / "out"))


def test_interrupted_build_leaves_no_readable_dataset(raw_root, tmp_path, monkeypatch):
    """tfds writes into a temporary directory: a build killed half-way is never taken as complete."""
    from data_pipelines import real
    from data_pipelines.real.preprocess import PreprocessOptions

    calls = []
    original = tasks.process_task

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(*args, **kwargs)

    monkeypatch.setattr(tasks, "process_task", dying)
    options = PreprocessOptions(min_frames=20)
    with pytest.raises(KeyboardInterrupt):
        real.prepare("voxceleb1", raw_root("voxceleb1"), str(tmp_path), options=options)
    final = tmp_path / "voxceleb1" / "1.0.0"
    assert not (final / "dataset_info.json").exists() and not build.is_built(str(final), report_lib.REPORT_NAME)
    with pytest.raises(FileNotFoundError, match="not a prepared TFDS dataset"):
        datasets.require_prepared(str(final))
    monkeypatch.setattr(tasks, "process_task", original)
    path = real.prepare("voxceleb1", raw_root("voxceleb1"), str(tmp_path), options=options)
    assert build.is_built(path, report_lib.REPORT_NAME) and sum(datasets.splits(path).values()) == 5
    assert json.loads((final / report_lib.REPORT_NAME).read_text())["counts"]["kept"] == 5
