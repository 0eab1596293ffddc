"""`--shard i/N` + merge and the Apache Beam DirectRunner give the plain build, example for example."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import datasets, real
from data_pipelines.real import builder as builder_lib
from data_pipelines.real import report as report_lib
from data_pipelines.real import sharded

OPTIONS_KW = {"min_frames": 20}


def _assert_same_dataset(a: str, b: str, read_split) -> None:
    assert datasets.splits(a) == datasets.splits(b)
    for split in datasets.splits(a):
        left, right = read_split(a, split), read_split(b, split)
        assert [x["clip_id"] for x in left] == [y["clip_id"] for y in right]
        for x, y in zip(left, right):
            assert set(x) == set(y)
            for key in x:
                if key == "frames":
                    assert list(x[key]) == list(y[key])  # identical JPEG bytes
                else:
                    np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]), err_msg=key)
    assert datasets.metadata(a) == datasets.metadata(b)
    ra, rb = report_lib.load_report(a), report_lib.load_report(b)
    for key in ("counts", "skipped", "notes", "splits", "clips"):
        assert ra[key] == rb[key], key


def test_shards_then_merge_equal_the_plain_build(raw_root, plain_build, read_split, tmp_path):
    from data_pipelines.real.preprocess import PreprocessOptions

    manual = raw_root("mead")
    options = PreprocessOptions(**OPTIONS_KW)
    make = lambda: real.make_builder("mead", str(tmp_path), options=options)  # noqa: E731
    directory = sharded.shard_dir(make())
    sharded.prepare_shard(make(), manual, 1, 2)
    # A merge before every shard is complete refuses to start, naming the missing shard.
    with pytest.raises(FileNotFoundError, match=r"missing: \[0\]"):
        sharded.check_complete(directory)
    # A half-written shard (a worker killed mid-way) is not taken as complete.
    open(os.path.join(directory, "shard-00000-of-00002.outcomes.jsonl.tmp-999"), "w").write("{}\n")
    assert sharded.complete_shards(directory) == (2, [1])
    sharded.prepare_shard(make(), manual, 0, 2)
    merged = make()
    merged.settings.merge_from = directory
    path = builder_lib.prepare(merged, manual)
    _assert_same_dataset(plain_build("mead"), path, read_split)


def test_parse_shard():
    assert sharded.parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "a/b", "3"):
        with pytest.raises(ValueError, match="i/N"):
            sharded.parse_shard(bad)


def test_cli_shard_and_merge(raw_root, plain_build, read_split, tmp_path):
    manual = raw_root("voxceleb1")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "JAX_PLATFORMS": "cpu"}
    base = [sys.executable, "-m", "data_pipelines.real"]
    flags = ["--dataset=voxceleb1", f"--manual_dir={manual}", f"--data_dir={tmp_path}", "--min_frames=20"]
    early = subprocess.run(base + ["merge"] + flags, env=env, capture_output=True, text=True, timeout=300)
    assert early.returncode == 2 and "no complete shard" in early.stderr
    for i in range(3):
        subprocess.run(base + ["prepare", f"--shard={i}/3"] + flags, env=env, check=True, capture_output=True, timeout=300)
    done = subprocess.run(base + ["merge"] + flags, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_dataset(plain_build("voxceleb1"), done.stdout.strip().splitlines()[-1], read_split)


def test_beam_direct_runner_equals_the_plain_build(raw_root, plain_build, read_split, tmp_path):
    from data_pipelines.real import beam
    from data_pipelines.real.preprocess import PreprocessOptions

    path = real.prepare("voxceleb2", raw_root("voxceleb2"), str(tmp_path), options=PreprocessOptions(**OPTIONS_KW),
                        beam_options=beam.pipeline_options("DirectRunner", []))
    _assert_same_dataset(plain_build("voxceleb2"), path, read_split)
