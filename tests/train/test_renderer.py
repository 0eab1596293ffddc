"""The `renderer` stage: smoke run through `run`, the one-step GAN update, and a learning test."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.config import freeze, load_config
from macl_jax.evals import renderer as renderer_evals
from macl_jax.models.renderers import count_params
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import renderer
from macl_jax.train.loop import create_state, make_step_fn


def _config(overrides=()):
    return freeze(load_config("configs/renderer.py:tiny", ["checkpoint.async_save=false", *overrides]))


def _losses(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_smoke_run_trains_evaluates_and_checkpoints(tmp_path, synthtalk_tiny_root):
    config = _config([f"data.dir={synthtalk_tiny_root}", "train.num_steps=8", "train.eval_every=8",
                      "checkpoint.every_steps=4"])
    out = renderer.run(config, tmp_path)
    assert out["step"] == 8
    losses = _losses(tmp_path)
    assert all(np.isfinite(v) for v in losses.values())
    assert losses[8] < 0.8 * losses[1], losses  # L1 from a random init falls fast
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["4", "8"]
    assert out["heldout_count"] == 16  # every clip of the held-out speakers
    for who in ("pred", "copy_ref"):
        assert np.isfinite(out[f"heldout_{who}_psnr"]) and 0 < out[f"heldout_{who}_ssim_gaussian"] <= 1
    # The copy baseline is a property of the data alone: recompute it with numpy.
    from data_pipelines.datasets import clip_source
    from data_pipelines.windows import RendererPairs

    source = renderer_evals.evaluation_pairs(clip_source(renderer_evals.dataset_path(config), "test"), RendererPairs(train=False))
    psnrs = []
    for i in range(len(source)):
        ex = source[i]
        mse = np.mean((ex["reference"].astype(np.float64) - ex["target"]) ** 2)
        psnrs.append(10 * np.log10(255.0**2 / mse))
    assert out["heldout_copy_ref_psnr"] == pytest.approx(np.mean(psnrs), rel=1e-4)


def _batch(size=32, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8) for k in renderer_evals.PAIR_FIELDS}


def _one_step(config, batch, mesh):
    task = renderer.build_task(config)
    key = jax.random.key(0)
    state, shardings, _ = create_state(task, key, mesh)
    init = jax.tree.map(np.asarray, state)
    with jax.set_mesh(mesh):
        new, metrics = make_step_fn(task, shardings)(state, to_global_batch(batch, mesh), key)
    return task, init, jax.tree.map(np.asarray, new), {k: float(v) for k, v in metrics.items()}


def test_gan_step_updates_both_networks_and_d_loss_never_reaches_g():
    mesh = make_mesh({"data": -1}, devices=jax.devices()[:1])  # one device: compiles faster
    batch = _batch(size=16, batch=4)
    small = ["model.num_downs=2", "model.ngf=4", "discriminator.n_layers=1", "discriminator.ndf=4"]
    vgg = ["loss.perceptual=0.1", "loss.perceptual_layers=('relu1_1',)", "loss.perceptual_layer_weights=(1.0,)"]
    task, init, new, metrics = _one_step(_config([*small, *vgg, "loss.gan=hinge"]), batch, mesh)
    assert metrics["finite"] == 1.0 and all(np.isfinite(v) for v in metrics.values())
    for name in ("g", "d"):
        moved = [np.abs(a - b).max() for a, b in zip(jax.tree.leaves(init.params[name]), jax.tree.leaves(new.params[name]))]
        assert max(moved) > 0, name
    # The frozen VGG is no part of the state: params are exactly the two networks.
    g_size = sum(int(np.size(x)) for x in jax.tree.leaves(init.params["g"]))
    assert g_size == count_params(task.generator(init))
    assert set(init.params) == {"g", "d"} and metrics["perceptual"] > 0

    # With the adversarial terms weighted 0, G's update equals the no-GAN update: D's loss
    # (computed on stop_gradient(G(x))) contributes nothing to G's gradient.
    _, _, gan_new, _ = _one_step(_config([*small, "loss.gan=lsgan", "loss.gan_weight=0", "loss.feature_matching=0"]), batch, mesh)
    _, _, plain_new, plain_metrics = _one_step(_config(small), batch, mesh)
    assert "d_loss" not in plain_metrics
    for a, b in zip(jax.tree.leaves(gan_new.params["g"]), jax.tree.leaves(plain_new.params["g"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="config.loss.gan"):
        renderer.build_task(_config(["loss.gan=wgan"]))
    with pytest.raises(ValueError, match="vgg19_path"):
        renderer.build_task(_config(["loss.perceptual_net=vgg19", "loss.perceptual=1.0"]))


@pytest.mark.multiprocess
def test_renderer_eval_equal_on_one_and_two_processes(eval_equal_on_one_and_two_processes, tmp_path, synthtalk_tiny_root):
    """Held-out PSNR / SSIM of the renderer (and the copy-the-reference baseline): 2 processes give the 1-process figures."""
    results = eval_equal_on_one_and_two_processes(
        "renderer", "configs/renderer.py:tiny", synthtalk_tiny_root, tmp_path, evaluators=("heldout",)
    )
    heldout = results["heldout"]
    assert {"pred_psnr", "pred_ssim_gaussian", "copy_ref_psnr", "copy_ref_ssim_gaussian"} <= set(heldout)
    assert heldout["pred_psnr"] != heldout["copy_ref_psnr"]


def test_learning_rate_decay_factor():
    task = renderer.build_task(_config(["train.num_steps=10", "optimizer.decay_start=0.5"]))
    got = [float(task.lr_factor(jnp.asarray(s))) for s in (0, 5, 7, 9, 10)]
    np.testing.assert_allclose(got, [1.0, 1.0, 0.6, 0.2, 0.0], rtol=1e-6)
    constant = renderer.build_task(_config(["train.num_steps=10"]))  # tiny: decay_start = 1.0
    assert float(constant.lr_factor(jnp.asarray(9))) == 1.0
