"""The `rhm` stage: the 3-D render is wired to the right frames, one GAN step updates both
networks, the ablation switches build, and a smoke run trains, checkpoints and evaluates."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from data_pipelines.datasets import clip_source
from data_pipelines.windows import EvaluationWindows
from macl_jax.config import freeze, load_config
from macl_jax.evals.renderer import dataset_path
from macl_jax.geometry.resample import warp
from macl_jax.train import rhm


def _config(root, overrides=()):
    return freeze(load_config("configs/rhm.py:tiny", ["checkpoint.async_save=false", f"data.dir={root}", *overrides]))


def _examples(config, n=4, split="test"):
    source = EvaluationWindows(clip_source(dataset_path(config), split), rhm.frames_window(config, train=False))
    rows = [source[i] for i in range(n)]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_the_render_brings_the_reference_into_the_target_pose(synthtalk_tiny_root):
    # At 64 px (the stored size) the mesh correspondence must move the warping reference's face
    # onto the target's: on the pixels where it holds, the warped reference is closer to the
    # target than the reference itself. A wrong camera, pose or transform fails this.
    config = _config(synthtalk_tiny_root, ["data.size=64", "mesh.level=2"])
    task = rhm.build_task(config)
    batch = _examples(config, n=6)
    x = jax.jit(task.inputs)(batch)
    confidence = np.asarray(x.flow_confidence)[..., 0] > 0
    assert confidence.mean() > 0.1  # the face is a good part of a face crop
    assert np.asarray(x.ani_mask).mean() > 0.1
    warped = np.asarray(warp(x.warp_full, x.ref_flow))
    target, source = np.asarray(x.target), np.asarray(x.warp_full)
    err_warped = np.abs(warped - target)[confidence].mean()
    err_still = np.abs(source - target)[confidence].mean()
    assert err_warped < 0.8 * err_still, (err_warped, err_still)
    # The drawn render's landmarks (from the worker) sit where the render's face is.
    ani_map = np.asarray(x.ani_map)[..., 0] > 0
    assert (np.asarray(x.ani_mask)[..., 0] > 0)[ani_map].mean() > 0.5


@pytest.mark.parametrize(
    "overrides, on",
    [(("model.warp_ani=False",), {"ref"}), (("model.warp_ref=False", "model.warp_ani=False", "loss.flow=0.0"), set())],
    ids=["no_ani", "no_warp"],
)
def test_the_ablations_drop_their_branches(synthtalk_tiny_root, overrides, on):
    # Traced, not compiled: the smoke run compiles the same code with every branch on.
    config = _config(synthtalk_tiny_root, overrides)
    task = rhm.build_task(config)
    generator = task.generator_fn(nnx.Rngs(0))
    generator.eval()  # stored statistics: tracing it mutates no state
    for branch in ("ref", "ani"):
        assert (getattr(generator, f"flow_{branch}") is None) == (branch not in on), branch
    x = jax.eval_shape(task.inputs, _examples(config, n=2, split="train"))
    assert (x.ani_image is None) == (config.loss.flow == 0)  # rendered only for the flow loss here
    out = jax.eval_shape(lambda x: task._generate(generator, x), x)
    _, parts = jax.eval_shape(task._generator_losses, out, x)
    expected = {f"{kind}_{branch}" for branch in on for kind in ("warp", "flow")}
    assert set(parts) == expected, sorted(parts)


def test_smoke_run_trains_evaluates_and_checkpoints(rhm_tiny_run, synthtalk_tiny_root):
    workdir, out = rhm_tiny_run  # train.num_steps=4, train.eval_every=4, checkpoint.every_steps=2
    config = _config(synthtalk_tiny_root)
    assert out["step"] == 4
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss" in r]
    assert logged and all(np.isfinite(r["loss"]) for r in logged)
    # Every generator term is on, and both networks get gradients (so Adam moves them).
    for key in ("g_adversarial", "feature_matching", "warp_ref", "warp_ani", "flow_ref", "flow_ani", "d_loss"):
        assert all(np.isfinite(r[key]) for r in logged), key
    assert all(r["grad_norm"] > 0 and r["d_grad_norm"] > 0 for r in logged)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert out["heldout_count"] == 8
    for who in ("pred", "copy_ref"):
        assert np.isfinite(out[f"heldout_{who}_psnr"]) and 0 < out[f"heldout_{who}_ssim_gaussian"] <= 1
    # The copy baseline is the unmasked warping reference: recompute it with numpy.
    batch = _examples(config, n=8)
    ref = batch["ref_images"][np.arange(8), batch["warp_ref"]].astype(np.float64)
    mse = np.mean((ref - batch["target_image"]) ** 2, axis=(1, 2, 3))
    assert out["heldout_copy_ref_psnr"] == pytest.approx(np.mean(10 * np.log10(255.0**2 / mse)), rel=1e-4)


def test_a_wrong_switch_is_refused(synthtalk_tiny_root):
    with pytest.raises(ValueError, match="config.model.sizes"):
        rhm.build_task(_config(synthtalk_tiny_root, ["model.sizes=huge"]))
    with pytest.raises(ValueError, match="feature_matching_layers"):
        rhm.build_task(_config(synthtalk_tiny_root, ["loss.feature_matching_layers=max"]))
