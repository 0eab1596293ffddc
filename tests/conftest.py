"""Test-process set-up: 8 CPU devices, before anything imports jax."""

import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import subprocess  # noqa: E402

import pytest  # noqa: E402


def _main_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # child processes choose their own device count
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra or {})
    return env


@pytest.fixture
def run_main():
    """Runs `python -m macl_jax.main ARGS` in a fresh process; returns the CompletedProcess."""

    def run(args, *, env=None, timeout=300, check=True):
        proc = subprocess.run(
            [sys.executable, "-m", "macl_jax.main", *args],
            cwd=REPO_ROOT,
            env=_main_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
        return proc

    return run


@pytest.fixture
def main_env():
    return _main_env


@pytest.fixture
def eval_one_and_two_processes(run_main):
    """Runs the `eval` stage with ARGS on 1 process (1 device) and on 2 local processes; returns
    both `eval_results.json` (the workdir in ARGS must hold a checkpoint)."""
    import json

    def run(args: list[str], workdir: Path, timeout: int = 900) -> tuple[dict, dict]:
        run_main(["eval", *args, "--config.runtime.num_cpu_devices=1"], timeout=timeout)
        single = json.loads((workdir / "eval_results.json").read_text())
        proc = subprocess.run(
            [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--", "eval", *args],
            env=_main_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        double = json.loads((workdir / "eval_results.json").read_text())
        assert single["processes"] == 1 and double["processes"] == 2
        return single, double

    return run


@pytest.fixture(scope="session")
def synthtalk_tiny_root(tmp_path_factory):
    """A data directory holding voxceleb_like_tiny, built once per session: pass it as config.data.dir."""
    from data_pipelines.synthtalk import builder

    root = tmp_path_factory.mktemp("synthtalk_data")
    builder.build("voxceleb_like_tiny", str(root), num_workers=2)
    return root


@pytest.fixture(scope="session")
def tiny_voxceleb(synthtalk_tiny_root):
    """(spec, dataset_dir, build_seconds) of voxceleb_like_tiny."""
    import time

    from data_pipelines.synthtalk import builder
    from data_pipelines.synthtalk.specs import variant

    start = time.perf_counter()
    path = builder.build("voxceleb_like_tiny", str(synthtalk_tiny_root), num_workers=2)
    return variant("voxceleb_like", "tiny"), path, time.perf_counter() - start
