"""The `mdn` stage: the fine-tuning learning rate, config checks, learning steps on a fixed batch
and the stage end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.config import freeze, load_config
from macl_jax.models.mdn_targets import speech_input
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import mdn, optim
from macl_jax.train.loop import create_state, make_step_fn


def _config(preset="tiny", **overrides):
    config = load_config(f"configs/mdn.py:{preset}")
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return freeze(config)


def test_the_speech_branch_is_fine_tuned_at_a_fraction_of_the_learning_rate():
    tx = optim.adam_l2(1e-2, weight_decay=0.0, mask_mode="masked", slow=lambda names: names[:1] == ["speech"], slow_factor=0.1)
    params = {"speech": {"w": jnp.ones((2, 2))}, "head": {"w": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["speech"]["w"]), 0.1 * np.asarray(updates["head"]["w"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["head"]["w"]), -1e-2, rtol=1e-3)


def test_code_faithful_loss_needs_the_shared_sigma():
    with pytest.raises(ValueError, match="sigma=shared"):
        mdn.build_task(_config(**{"loss.code_faithful": True}))
    mdn.build_task(_config(**{"loss.code_faithful": True, "model.sigma": "shared"}))


@pytest.mark.parametrize("overrides", [{}, {"loss.code_faithful": True, "model.sigma": "shared"}, {"model.regression": "a", "loss.lip_l1": 1.0}])
def test_steps_on_a_fixed_batch_lower_the_loss(mdn_test_clips, overrides):
    config = _config(**{"model.head_dropout": 0.0, **overrides})
    task = mdn.build_task(config)
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    state, shardings, _ = create_state(task, jax.random.key(0), mesh)
    step = make_step_fn(task, shardings)
    losses = []
    with jax.set_mesh(mesh):
        batch = to_global_batch(mdn_test_clips[0], mesh)
        for _ in range(15):
            state, metrics = step(state, batch, jax.random.key(1))
            losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


def test_mdn_stage_runs_end_to_end_and_writes_plots(run_main, synthtalk_tiny_root, tmp_path):
    workdir = tmp_path / "mdn"
    run_main(["mdn", "--config", "configs/mdn.py:tiny", "--workdir", str(workdir), f"--config.data.dir={synthtalk_tiny_root}"], timeout=600)
    summary = json.loads((workdir / "mdn_summary.json").read_text())
    assert np.isfinite(summary["test_m_lmd"]) and summary["test_count"] > 0
    assert summary["plots"] and all((workdir / "plots" / p.rsplit("/", 1)[-1]).stat().st_size > 1000 for p in summary["plots"])


@pytest.mark.multiprocess
def test_mdn_eval_equal_on_one_and_two_processes(eval_equal_on_one_and_two_processes, tmp_path, synthtalk_tiny_root):
    """Sharded MDN evaluation (landmark metrics, baselines, NLL): 2 processes give the 1-process figures."""
    results = eval_equal_on_one_and_two_processes(
        "mdn", "configs/mdn.py:tiny", synthtalk_tiny_root, tmp_path, train_extra=("--config.eval.plot_clips=0",)
    )
    assert results["test"]["m_lmd_static"] > 0


def test_the_speech_blind_control_hears_another_clip_of_the_batch():
    audio = jnp.arange(4 * 3, dtype=jnp.float32).reshape(4, 3)
    own = speech_input({"audio": audio}, _config(), jnp.float32)
    other = speech_input({"audio": audio}, _config(**{"model.speech_input": "other_clip"}), jnp.float32)
    np.testing.assert_array_equal(own, audio)
    np.testing.assert_array_equal(other, audio[jnp.array([3, 0, 1, 2])])
    with pytest.raises(ValueError, match="config.model.speech_input"):
        mdn.check_config(_config(**{"model.speech_input": "silence"}))
