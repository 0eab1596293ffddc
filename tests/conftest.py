"""Test-process set-up: 8 CPU devices, before anything imports jax."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One XLA compilation cache for the session, shared with every `macl-jax` child process and every
# pytest-xdist worker through the environment: many tests compile the same tiny train and eval
# steps, in-process and in fresh processes, and a cache hit loads the executable XLA built the first
# time (same HLO, same flags, so the same numbers) instead of compiling it again. JAX guards the
# cache's files with a lock. A fresh directory per session, made and removed by the process that
# starts the session (xdist's workers inherit it).
_OWNS_XLA_CACHE = "MACL_TEST_XLA_CACHE" not in os.environ
if _OWNS_XLA_CACHE:
    os.environ["MACL_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="macl_jax_test_xla_cache_")
_XLA_CACHE = os.environ["MACL_TEST_XLA_CACHE"]
os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import subprocess  # noqa: E402

import pytest  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    if _OWNS_XLA_CACHE:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


# Session fixtures that train models; with pytest-xdist (`-n 2 --dist loadgroup`, the CI command)
# every test that uses one runs on the same worker, so each is trained once (checked below).
_TRAINED_RUN_FIXTURES = {"quick_pipeline", "rhm_tiny_run"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if _TRAINED_RUN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("trained_runs"))


_UNGROUPED = []  # (worker) grouped tests whose ids xdist did not tag; see the next two hooks


@pytest.hookimpl(trylast=True)  # after xdist has tagged the grouped tests' ids (on a worker)
def pytest_collection_finish(session):
    """xdist keeps a group on one worker by a `@group` suffix it writes into the tests' node ids; a
    pytest that builds node ids another way (9.2, with pytest-xdist 3.8) loses the suffix silently,
    and every worker would then train its own copy of each trained fixture."""
    if os.environ.get("PYTEST_XDIST_WORKER") and session.config.getvalue("loadgroup"):
        _UNGROUPED.extend(item.nodeid for item in session.items
                          if item.get_closest_marker("xdist_group") and "@" not in item.nodeid)


def pytest_runtest_setup(item):
    if _UNGROUPED and item.get_closest_marker("xdist_group"):
        pytest.fail(
            f"pytest-xdist did not apply the xdist_group marks with pytest {pytest.__version__}, so the "
            "trained session fixtures would be trained on every worker. Reinstall the test tools with "
            "`.venv/bin/pip install -e '.[dev]'` (it holds pytest below 9.2), or run without -n.", pytrace=False)


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
def eval_equal_on_one_and_two_processes(run_main):
    """Trains `stage` with `config` for 2 steps on SynthTalk tiny, runs the `eval` stage on 1
    process (1 device) and on 2 local processes with a global batch of 6, and checks that every
    metric of every evaluator (by default the two splits) agrees (rel 1e-6) and that the 16 clips
    were each counted once; returns the 1-process results by evaluator."""
    import json

    def run(stage: str, config: str, data_root: Path, workdir: Path, train_extra: tuple[str, ...] = (),
            evaluators: tuple[str, ...] = ("validation", "test")) -> dict:
        common = ["--config", config, "--workdir", str(workdir), f"--config.data.dir={data_root}", "--config.eval.global_batch_size=6"]
        run_main([stage, *common, "--config.train.num_steps=2", "--config.train.eval_every=0",
                  "--config.checkpoint.every_steps=2", *train_extra], timeout=900)
        run_main(["eval", *common, "--config.runtime.num_cpu_devices=1"], timeout=900)
        single = json.loads((workdir / "eval_results.json").read_text())
        proc = subprocess.run(
            [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--", "eval", *common],
            env=_main_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        double = json.loads((workdir / "eval_results.json").read_text())
        assert single["processes"] == 1 and double["processes"] == 2
        assert set(single["results"]) == set(evaluators)
        for split, metrics in single["results"].items():
            assert metrics["count"] == 16  # not a multiple of 6: padding rows were masked
            for key, value in metrics.items():
                assert double["results"][split][key] == pytest.approx(value, rel=1e-6, abs=1e-7), (split, key)
        return single["results"]

    return run


@pytest.fixture(scope="session")
def synthtalk_tiny_root(tmp_path_factory):
    """A data directory holding voxceleb_like_tiny, built once per session: pass it as config.data.dir."""
    from data_pipelines.synthtalk import builder

    root = tmp_path_factory.mktemp("synthtalk_data")
    builder.build("voxceleb_like_tiny", str(root), num_workers=2)
    return root


@pytest.fixture(scope="session")
def mdn_test_clips(synthtalk_tiny_root):
    """(batch, source): the first 4 test clips of voxceleb_like_tiny as one MDN batch (numpy, the
    fields the MDN reads, evaluation windows) and the split's clip source."""
    import numpy as np

    from data_pipelines import datasets
    from data_pipelines.windows import MDNClips
    from macl_jax.config import load_config
    from macl_jax.evals.mdn import clip_fields
    from macl_jax.models.mdn_targets import FIELDS

    config = load_config("configs/mdn.py:tiny")
    config.data.dir = str(synthtalk_tiny_root)
    source = datasets.clip_source(datasets.dataset_dir(config.data), "test")
    rows = [clip_fields(MDNClips(train=False))(source[i], np.random.default_rng(0)) for i in range(4)]
    return {k: np.stack([r[k] for r in rows]) for k in FIELDS}, source


@pytest.fixture(scope="session")
def tiny_voxceleb(synthtalk_tiny_root):
    """(spec, dataset_dir, build_seconds) of voxceleb_like_tiny."""
    import time

    from data_pipelines.synthtalk import builder
    from data_pipelines.synthtalk.specs import variant

    start = time.perf_counter()
    path = builder.build("voxceleb_like_tiny", str(synthtalk_tiny_root), num_workers=2)
    return variant("voxceleb_like", "tiny"), path, time.perf_counter() - start


@pytest.fixture(scope="session")
def rhm_tiny_run(synthtalk_tiny_root, tmp_path_factory):
    """(workdir, final metrics) of a 4-step `rhm` run of the tiny preset (checkpoints at 2 and 4,
    evaluated at 4), trained once per session in this process: the stage's smoke test and the
    generation tests share it."""
    from macl_jax.config import freeze, load_config, write_resolved_config
    from macl_jax.train import rhm

    workdir = tmp_path_factory.mktemp("rhm_tiny")
    config = freeze(load_config("configs/rhm.py:tiny", [
        "checkpoint.async_save=false", f"data.dir={synthtalk_tiny_root}", "train.num_steps=4", "train.eval_every=4",
        "checkpoint.every_steps=2",
    ]))
    write_resolved_config(config, workdir)  # as `macl-jax rhm` does: what generation restores from
    return workdir, rhm.run(config, workdir)


@pytest.fixture(scope="session")
def quick_pipeline(synthtalk_tiny_root, tmp_path_factory):
    """(workdir, completed process) of `macl-jax pipeline --quick` on the tiny SynthTalk build,
    trained once per session (a few minutes on 2 cores)."""
    workdir = tmp_path_factory.mktemp("pipeline_quick")
    proc = subprocess.run(
        [sys.executable, "-m", "macl_jax.main", "pipeline", "--quick", "--workdir", str(workdir), f"--config.data.dir={synthtalk_tiny_root}"],
        cwd=REPO_ROOT, env=_main_env(), capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir, proc
