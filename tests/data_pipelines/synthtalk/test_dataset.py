"""The SynthTalk TFDS build: splits, schema, determinism and what the data teaches."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import datasets, schema
from data_pipelines.synthtalk import builder, probes
from data_pipelines.synthtalk.specs import variant


def _split(path, split):
    source = datasets.clip_source(path, split)
    return [source[i] for i in range(len(source))]


def test_splits_match_the_spec_and_test_speakers_are_unseen(tiny_voxceleb):
    spec, path, _ = tiny_voxceleb
    splits = {s: _split(path, s) for s in ("train", "validation", "test")}
    for name, examples in splits.items():
        assert len(examples) == spec.num_clips(name)
    speakers = {name: {int(e["speaker"]) for e in ex} for name, ex in splits.items()}
    assert speakers["train"] == set(range(spec.num_train_speakers))
    assert speakers["validation"] == speakers["train"]
    assert not speakers["test"] & speakers["train"]
    ids = [schema.as_text(e["clip_id"]) for ex in splits.values() for e in ex]
    assert len(set(ids)) == len(ids)
    assert "tensorflow" not in sys.modules


def test_examples_follow_the_schema(tiny_voxceleb):
    spec, path, _ = tiny_voxceleb
    ex = datasets.clip_source(path, "test")[3]
    t = spec.num_frames
    assert ex["frames"].shape == (t,)
    frame = np.asarray(Image.open(io.BytesIO(ex["frames"][5])))
    assert frame.shape == (spec.image_size, spec.image_size, 3) and frame.dtype == np.uint8
    assert ex["audio"].dtype == np.float32 and ex["audio"].shape == (spec.num_samples,)
    assert np.abs(ex["audio"]).max() <= 1.0 and np.abs(ex["audio"]).max() > 0.05
    assert ex["landmarks_2d"].shape == (t, 68, 2) and ex["landmarks_3d"].shape == (t, 68, 3)
    lm = ex["landmarks_2d"]
    assert lm.min() >= 0 and lm.max() < spec.image_size
    r = ex["head_rotation"].astype(np.float64)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
    assert ex["visemes"].shape == (t, 4)
    assert np.all(np.diff(ex["phoneme_start"]) >= 0) and ex["phoneme_end"][-1] >= t / spec.fps - 1e-3
    assert int(ex["intensity"]) == 0 and int(ex["emotion"]) == schema.EMOTIONS.index("neutral")
    # Posed 3-D landmarks are the frontal face moved by the stored head pose.
    info = builder.tfds.builder_from_directory(path).info
    assert info.metadata["speakers"][int(ex["speaker"])] == schema.as_text(ex["speaker_id"])


def _digest(path):
    # Every file of the build: shards, dataset_info.json, features.json, metadata.json, labels.
    files = sorted(glob.glob(os.path.join(path, "*")))
    assert any(".array_record-" in f for f in files) and len(files) >= 5
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.basename(f).encode())
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path):
    def micro(seed):
        return variant("mead_like", "tiny", num_train_speakers=1, num_test_speakers=1, train_clips=1,
                       validation_clips=1, test_clips=0, num_frames=16, seed=seed)

    spec = micro(0)
    # Different worker counts must not change a byte.
    a = builder.build(spec, str(tmp_path / "a"), num_workers=1)
    b = builder.build(spec, str(tmp_path / "b"), num_workers=2)
    c = builder.build(micro(1), str(tmp_path / "c"), num_workers=1)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_emotions_label_mead_like_clips(tmp_path):
    spec = variant("mead_like", "tiny", num_train_speakers=1, num_test_speakers=1, train_clips=1,
                   validation_clips=1, test_clips=0, num_frames=16)
    path = builder.build(spec, str(tmp_path), num_workers=1)
    train = _split(path, "train")
    labels = {(schema.EMOTIONS[int(e["emotion"])], int(e["intensity"])) for e in train}
    assert labels == set(spec.conditions) and len(labels) == 22


def test_audio_carries_the_lips_and_not_the_head(tiny_voxceleb):
    _, path, _ = tiny_voxceleb
    train = probes.frame_probe_data(_split(path, "train"))
    test = probes.frame_probe_data(_split(path, "test"))
    scores = probes.lip_and_pose_probe(train, test)
    print(f"\nSynthTalk voxceleb_like_tiny: mouth R^2 {scores['mouth_r2']:.3f}, yaw R^2 {scores['yaw_r2']:.3f}")
    assert scores["mouth_r2"] >= 0.5
    assert scores["yaw_r2"] < scores["mouth_r2"] - 0.3


def test_speaker_identity_is_in_the_audio(tiny_voxceleb):
    spec, path, _ = tiny_voxceleb
    result = probes.speaker_probe(_split(path, "train"), _split(path, "validation"))
    print(f"\nSynthTalk voxceleb_like_tiny: speaker accuracy {result['accuracy']:.3f} (chance {result['chance']:.3f})")
    assert result["accuracy"] >= 4 * result["chance"]


def test_concurrent_builds_of_one_directory_build_once(tmp_path):
    """The processes of a job may all call build(): one builds, the others wait and reuse it."""
    import subprocess

    code = (
        "import sys; from data_pipelines.synthtalk import builder; from data_pipelines.synthtalk.specs import variant\n"
        "spec = variant('voxceleb_like', 'tiny', num_train_speakers=1, num_test_speakers=1, train_clips=2,"
        " validation_clips=1, test_clips=1, num_frames=16)\n"
        "print('PATH', builder.build(spec, sys.argv[1], num_workers=1))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(__import__("pathlib").Path(__file__).resolve().parents[3]))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outputs]
    paths = {line for out, _ in outputs for line in out.splitlines() if line.startswith("PATH")}
    assert len(paths) == 1
    assert sum(out.count("built in") for out, _ in outputs) == 1
    assert len(datasets.clip_source(paths.pop()[5:], "train")) == 2
