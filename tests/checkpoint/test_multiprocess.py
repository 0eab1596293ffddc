"""Checkpoint edge cases that only exist with several processes (2 local JAX processes)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("mp_worker.py")


def _run(directory: Path, phase: str) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(i), str(port), str(directory), phase],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for i in range(2)
    ]
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=120)  # a deadlock fails the test instead of hanging CI
            assert proc.returncode == 0, out[-3000:]
            results.append(json.loads([line for line in out.splitlines() if line.startswith("RESULT ")][-1][7:]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


@pytest.mark.multiprocess
def test_damage_seen_by_one_process_falls_back_everywhere(tmp_path):
    _run(tmp_path, "save")
    # Each process writes its own shard files: damage one of process 1's only.
    (shard,) = (tmp_path / "2" / "state" / "ocdbt.process_1" / "d").iterdir()
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    results = _run(tmp_path, "restore")
    assert [r["step"] for r in results] == [1, 1]
    assert sorted(r["first"] for r in results) == [1.0, 1025.0]  # each process its half of step 1
    assert any(p.name.startswith("2.corrupt-") for p in tmp_path.iterdir())


@pytest.mark.multiprocess
def test_resave_over_an_unfinished_save(tmp_path):
    leftover = tmp_path / "5.orbax-checkpoint-tmp" / "state"
    leftover.mkdir(parents=True)
    (leftover / "partial").write_text("cut off mid-save")
    assert [r["saved"] for r in _run(tmp_path, "resave")] == [True, True]
    assert (tmp_path / "5").is_dir()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("5.incomplete-")]
    assert kept and (kept[0] / "state" / "partial").read_text() == "cut off mid-save"
