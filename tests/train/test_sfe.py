"""The `sfe` stage: optimizer semantics, a learning step on a fixed batch, and the stage end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.config import freeze, load_config
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import optim, sfe
from macl_jax.train.loop import create_state, make_step_fn


def _config(**overrides):
    config = load_config("configs/sfe.py:tiny")
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return freeze(config)


def test_weight_decay_mask_spares_slots_norms_biases_and_scales():
    config = _config()
    task = sfe.build_task(config, epoch_steps=1)
    params = jax.eval_shape(task.init, jax.random.key(0)).params
    flat = jax.tree_util.tree_leaves_with_path(optim.weight_decay_mask(params, "masked"))
    names = {jax.tree_util.keystr(p): m for p, m in flat}
    assert not any(m for n, m in names.items() if "slots" in n)
    assert not any(m for n, m in names.items() if "scale" in n or n.endswith("'bias']"))
    assert any(m for n, m in names.items() if "kernel" in n)
    assert all(m for _, m in jax.tree_util.tree_leaves_with_path(optim.weight_decay_mask(params, "reference")))
    with pytest.raises(ValueError, match="weight_decay_mask"):
        optim.weight_decay_mask(params, "none")


def test_learning_rate_drops_after_the_configured_epochs():
    config = _config(**{"optim.lr_drop_epochs": 2, "optim.weight_decay": 0.0})
    tx = sfe.make_optimizer(config, epoch_steps=3)
    params = {"w": jnp.ones(())}
    state = tx.init(params)
    steps = []
    for _ in range(8):
        update, state = tx.update({"w": jnp.ones(())}, state, params)
        steps.append(-float(update["w"]))
    lr = config.train.learning_rate
    np.testing.assert_allclose(steps[:6], lr, rtol=1e-3)  # Adam's first steps have unit magnitude
    np.testing.assert_allclose(steps[6:], 0.1 * lr, rtol=1e-3)


def test_coupled_weight_decay_matches_torch_adam_semantics():
    """add_decayed_weights before Adam: the decay term enters the moments (torch Adam(weight_decay))."""
    config = _config(**{"optim.weight_decay": 0.5, "optim.weight_decay_mask": "reference"})
    tx = sfe.make_optimizer(config, epoch_steps=1)
    p = {"w": jnp.array([2.0])}
    update, _ = tx.update({"w": jnp.array([0.0])}, tx.init(p), p)
    # g' = 0 + 0.5 * 2 = 1; first Adam step = -lr * g'/|g'|
    np.testing.assert_allclose(float(update["w"][0]), -config.train.learning_rate, rtol=1e-4)


def test_steps_on_a_fixed_batch_lower_the_loss():
    config = _config(**{"augment.enabled": False, "model.dropout": 0.0})
    task = sfe.build_task(config, epoch_steps=1)
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    state, shardings, _ = create_state(task, jax.random.key(0), mesh)
    step = make_step_fn(task, shardings)
    rng = np.random.default_rng(0)
    batch = {
        "audio": rng.uniform(size=(4, 5, 20, 80)).astype(np.float32),
        "frames": rng.integers(0, 256, size=(4, 5, 5, 32, 32, 3)).astype(np.uint8),
    }
    losses = []
    with jax.set_mesh(mesh):
        global_batch = to_global_batch(batch, mesh)
        for _ in range(12):
            state, metrics = step(state, global_batch, jax.random.key(1))
            losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses


def test_sfe_stage_learns_sync_on_held_out_speakers(run_main, tmp_path, synthtalk_tiny_root):
    """The stage end to end (training, validation, best-state selection, held-out evaluation), and
    a learning bar: held-out sync top-1 clearly above chance (1/S = 0.2), which an untrained SFE
    or one whose speech branch ignores the audio does not reach (docs/testing.md)."""
    workdir = tmp_path / "sfe"
    # Without dropout and augmentation the tiny SFE leaves chance within 300 steps (the tiny
    # preset's dropout 0.5 and colour jitter are the reference's, sized for 200 epochs).
    run_main(
        ["sfe", "--workdir", str(workdir), f"--config.data.dir={synthtalk_tiny_root}", "--config.train.num_steps=300",
         "--config.train.eval_every=150", "--config.checkpoint.every_steps=150", "--config.train.log_every=50",
         "--config.model.dropout=0.0", "--config.augment.enabled=False"],
        timeout=1500,
    )
    summary = json.loads((workdir / "sfe_summary.json").read_text())
    for key in ("validation_sync_top1", "test_sync_top1", "test_eer", "test_identity_top1", "validation_selection_score"):
        assert np.isfinite(summary[key]), key
    assert summary["test_num_trials"] > 0 and 0.0 <= summary["test_eer"] <= 1.0
    assert summary["best"]["metric"] == "eval/validation/selection_score"
    assert (workdir / "best").is_dir() and any(p.name.isdigit() for p in (workdir / "best").iterdir())
    events = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if "loss" in e]
    assert len(losses) == 6 and np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.5, losses
    assert summary["sync_chance"] == pytest.approx(0.2)
    assert summary["test_sync_top1"] > 1.5 * summary["sync_chance"], summary["test_sync_top1"]


@pytest.mark.multiprocess
def test_sfe_eval_equal_on_one_and_two_processes(eval_equal_on_one_and_two_processes, tmp_path, synthtalk_tiny_root):
    """Sharded evaluation of a SynthTalk-tiny SFE: 2 processes give the 1-process figures (1e-6)."""
    results = eval_equal_on_one_and_two_processes("sfe", "configs/sfe.py:tiny", synthtalk_tiny_root, tmp_path)
    assert 0.0 <= results["test"]["eer"] <= 1.0
