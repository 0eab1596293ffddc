"""The entry point, run as users run it: fresh processes, real signals, several processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from macl_jax.train.logging import read_metrics

REPO_ROOT = Path(__file__).resolve().parent.parent

SMOKE = ["--config", "configs/smoke.py:tiny"]


def _losses(workdir):
    return {step: m["loss"] for step, m in read_metrics(workdir / "metrics.jsonl").items()}


def test_unknown_config_key_is_a_clear_error(run_main, tmp_path):
    proc = run_main([*SMOKE, "--workdir", str(tmp_path), "--config.train.num_stepz=3"], check=False)
    assert proc.returncode == 2
    assert "unknown config key 'train.num_stepz'" in proc.stderr and "num_steps" in proc.stderr
    assert not (tmp_path / "config.json").exists()


def test_unknown_stage_lists_stages(run_main, tmp_path):
    proc = run_main(["trian", "--workdir", str(tmp_path)], check=False)
    assert proc.returncode == 2 and "available stages" in proc.stderr and "smoke" in proc.stderr


def test_stage_runs_and_records_resolved_config(run_main, tmp_path):
    relative = os.path.relpath(tmp_path, REPO_ROOT)  # as users type it: relative to where they are
    run_main(["smoke", "--workdir", relative, "--config.train.num_steps=40", "--config.runtime.num_cpu_devices=2"])
    assert (tmp_path / "checkpoints" / "40").is_dir()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["num_steps"] == 40 and config["runtime"]["num_cpu_devices"] == 2
    summary = json.loads((tmp_path / "smoke_summary.json").read_text())
    assert summary["step"] == 40
    # The held-out error beats predicting the training mean: the runtime really trains.
    assert summary["heldout_relative_mse"] < 0.9


def test_sigkill_midway_then_restart_matches_uninterrupted(run_main, tmp_path):
    common = [*SMOKE, "--config.train.num_steps=50", "--config.checkpoint.every_steps=10", "--config.runtime.num_cpu_devices=2"]
    run_main([*common, "--workdir", str(tmp_path / "whole")])
    killed = run_main([*common, "--workdir", str(tmp_path / "killed")], env={"MACL_FAULT_INJECT": "sigkill@27"}, check=False)
    assert killed.returncode == -9
    partial = _losses(tmp_path / "killed")
    assert max(partial) < 50
    run_main([*common, "--workdir", str(tmp_path / "killed")])
    whole, resumed = _losses(tmp_path / "whole"), _losses(tmp_path / "killed")
    assert sorted(resumed) == list(range(1, 51))
    assert [resumed[s] for s in range(1, 51)] == [whole[s] for s in range(1, 51)]  # bit-identical, same data order
    assert '"event": "resumed"' in (tmp_path / "killed" / "metrics.jsonl").read_text()


def test_sigterm_saves_and_resumes(run_main, tmp_path):
    common = [*SMOKE, "--config.train.num_steps=40", "--config.checkpoint.every_steps=100", "--workdir", str(tmp_path)]
    proc = run_main(common, env={"MACL_FAULT_INJECT": "sigterm@13"}, check=False)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert (tmp_path / "checkpoints" / "13").is_dir()
    run_main(common)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"event"' in line]
    assert [(e["event"], e["step"]) for e in events] == [("preempted", 13), ("resumed", 13)]
    assert max(_losses(tmp_path)) == 40


@pytest.mark.multiprocess
def test_two_processes_equal_one(run_main, main_env, tmp_path):
    common = [*SMOKE, "--config.train.num_steps=30", "--config.checkpoint.every_steps=15"]
    run_main([*common, "--workdir", str(tmp_path / "one"), "--config.runtime.num_cpu_devices=2"])
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--devices_per_process", "1",
         "--", *common, "--workdir", str(tmp_path / "two")],
        env=main_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "[p1]" in proc.stdout or "[p0]" in proc.stdout
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(two) == list(range(1, 31))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-6, abs=1e-7)
    s1 = json.loads((tmp_path / "one" / "smoke_summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "smoke_summary.json").read_text())
    assert s2["heldout_mse"] == pytest.approx(s1["heldout_mse"], rel=1e-6)

    # The model axis spans the processes: both hold (and load) the same rows; same losses.
    spanning = tmp_path / "model_axis"
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--",
         *common, "--config.runtime.mesh.data=1", "--config.runtime.mesh.model=-1", "--workdir", str(spanning)],
        env=main_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    for step, loss in _losses(spanning).items():
        assert loss == pytest.approx(one[step], rel=1e-5, abs=1e-6), step

    # A resized job: 2 processes train to step 15, one process resumes to 30; same data, same losses.
    resized = tmp_path / "resized"
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--",
         *SMOKE, "--config.train.num_steps=15", "--config.checkpoint.every_steps=15", "--workdir", str(resized)],
        env=main_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    run_main([*common, "--workdir", str(resized), "--config.runtime.num_cpu_devices=2"])
    after = _losses(resized)
    for step in range(1, 31):
        assert after[step] == pytest.approx(one[step], rel=1e-6, abs=1e-7), step


def test_launcher_dry_run_prints_exact_commands():
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--port", "4321", "--dry-run",
         "--", "--config", "configs/smoke.py:tiny", "--workdir", "/tmp/w"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    for i, line in enumerate(lines):
        assert line == (
            f"MACL_COORDINATOR_ADDRESS=127.0.0.1:4321 MACL_NUM_PROCESSES=2 MACL_PROCESS_ID={i} JAX_PLATFORMS=cpu "
            f"{sys.executable} -m macl_jax.main --config configs/smoke.py:tiny --workdir /tmp/w "
            "--config.runtime.num_cpu_devices=1"
        )
