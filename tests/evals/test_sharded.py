import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.loader import evaluation_dataset, make_iterator
from macl_jax.evals.sharded import GAUSSIAN, MEAN, POOL, evaluate
from macl_jax.parallel import make_mesh


class Source:
    def __init__(self, n, dim=3, seed=0):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, dim)).astype(np.float32)
        self.score = rng.normal(size=(n,)).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "score": self.score[i]}


class Probe:
    """Per-example outputs straight from the batch, so the expected reductions are plain numpy."""

    name = "probe"
    reductions = {"norm": MEAN, "score": POOL, "x": GAUSSIAN}

    def per_example(self, state, batch):
        return {"norm": jnp.linalg.norm(batch["x"], axis=-1) * state, "score": batch["score"], "x": batch["x"]}

    def finalize(self, reduced):
        mean, cov = reduced["x"].mean_cov()
        return {"norm": reduced["norm"], "count": reduced["norm/count"], "scores": reduced["score"], "mean": mean, "cov": cov}


def _run(source, global_batch, devices, process_index=0, process_count=1):
    mesh = make_mesh({"data": -1}, devices=devices)
    dataset = evaluation_dataset(source, global_batch_size=global_batch, process_index=process_index, process_count=process_count)
    return evaluate(Probe(), jnp.float32(2.0), make_iterator(dataset, prefetch=0), mesh)


def test_padding_marks_only_the_extra_rows():
    source = Source(10)
    batches = [list(evaluation_dataset(source, global_batch_size=4, process_index=p, process_count=2)) for p in range(2)]
    assert len(batches[0]) == len(batches[1]) == 3  # same number of steps on every process
    valid = np.concatenate([np.concatenate([b0["valid"], b1["valid"]]) for b0, b1 in zip(*batches)])
    assert valid.tolist() == [1.0] * 10 + [0.0] * 2
    rows = np.concatenate([np.concatenate([b0["x"], b1["x"]]) for b0, b1 in zip(*batches)])[:10]
    np.testing.assert_array_equal(rows, source.x)  # ordered, each example once


@pytest.mark.parametrize("global_batch, num_devices", [(8, 8), (16, 1), (24, 8)])
def test_reductions_match_numpy_for_any_batch_and_device_count(global_batch, num_devices):
    source = Source(37)
    out = _run(source, global_batch, jax.devices()[:num_devices])
    assert out["count"] == 37
    np.testing.assert_allclose(out["norm"], 2 * np.linalg.norm(source.x, axis=-1).mean(), rtol=1e-6)
    np.testing.assert_array_equal(np.sort(out["scores"]), np.sort(source.score))
    np.testing.assert_allclose(out["mean"], source.x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["cov"], np.cov(source.x, rowvar=False), rtol=1e-5, atol=1e-6)


@pytest.mark.multiprocess
def test_eval_stage_equal_on_one_process_two_processes_and_eight_devices(run_main, main_env, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    train = ["--config", "configs/smoke.py:tiny", "--workdir", str(tmp_path), "--config.train.num_steps=20",
             "--config.checkpoint.every_steps=20"]
    run_main(["smoke", *train, "--config.runtime.num_cpu_devices=2"])
    evaluate_args = ["eval", "--config", "configs/smoke.py:tiny", "--workdir", str(tmp_path), "--config.eval.global_batch_size=48"]
    results = {}
    for label, devices in (("1x1", 1), ("1x8", 8)):
        run_main([*evaluate_args, f"--config.runtime.num_cpu_devices={devices}"])
        results[label] = json.loads((tmp_path / "eval_results.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--", *evaluate_args],
        env=main_env(), cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    results["2x1"] = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["2x1"]["processes"] == 2 and results["1x8"]["devices"] == 8
    reference = results["1x1"]["results"]["heldout"]
    assert reference["count"] == 512  # 512 is not a multiple of 48: padding was exercised
    for label in ("1x8", "2x1"):
        for key, value in results[label]["results"]["heldout"].items():
            assert value == pytest.approx(reference[key], rel=1e-6, abs=1e-7), (label, key)
