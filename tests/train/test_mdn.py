import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines import datasets
from data_pipelines.windows import MDNClips
from macl_jax.checkpoint import CheckpointManager
from macl_jax.config import freeze, load_config
from macl_jax.geometry import savgol_smooth
from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train import mdn, optim, sfe
from macl_jax.train.loop import create_state, make_step_fn


def _config(preset="tiny", **overrides):
    config = load_config(f"configs/mdn.py:{preset}")
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return freeze(config)


@pytest.fixture(scope="module")
def tiny_clips(synthtalk_tiny_root):
    config = load_config("configs/mdn.py:tiny")
    config.data.dir = str(synthtalk_tiny_root)
    directory = datasets.dataset_dir(config.data)
    source = datasets.clip_source(directory, "test")
    window = MDNClips(train=False)
    rows = [mdn.clip_fields(window)(source[i], np.random.default_rng(0)) for i in range(4)]
    return {k: np.stack([r[k] for r in rows]) for k in mdn.FIELDS}, source


@pytest.mark.parametrize("regression,relative", [("tt", True), ("tt", False), ("a", True)])
def test_decoding_the_target_gives_back_the_pixel_landmarks(tiny_clips, regression, relative):
    """target -> (de-align, re-anchor on the reference pose) -> de-normalise inverts the preprocessing
    of docs/decisions.md#d7-landmark-preprocessing."""
    batch = {k: jnp.asarray(v) for k, v in tiny_clips[0].items()}
    y = mdn.target(batch, regression, relative)
    assert y.shape[-1] == (139 if regression == "tt" else 136)
    anchor = batch if relative else None
    pixels = mdn.to_pixels(mdn.to_normalised_landmarks(y, regression, anchor), batch)
    np.testing.assert_allclose(np.asarray(pixels), tiny_clips[0]["landmarks"], atol=2e-3)
    # With a component axis (B, T, M, 68, 2) every component decodes the same way.
    stacked = jnp.stack([y, y], axis=2)
    both = mdn.to_pixels(mdn.to_normalised_landmarks(stacked, regression, anchor), batch)
    np.testing.assert_allclose(np.asarray(both[:, :, 1]), tiny_clips[0]["landmarks"], atol=2e-3)
    if relative and regression == "tt":
        # The reference frame's own relative pose is zero.
        rows = np.arange(y.shape[0])
        np.testing.assert_allclose(np.asarray(y[rows, batch["reference_index"], 136:]), 0.0, atol=1e-6)


def test_on_device_smoothing_equals_savitzky_golay():
    x = np.random.default_rng(0).normal(size=(2, 60, 68, 2)).astype(np.float32)
    config = _config()
    got = mdn.smooth_time(jnp.asarray(x), config)
    np.testing.assert_allclose(np.asarray(got), savgol_smooth(x, 7, 3, axis=1), atol=1e-4)


def test_the_speech_branch_is_fine_tuned_at_a_fraction_of_the_learning_rate():
    tx = optim.adam_l2(1e-2, weight_decay=0.0, mask_mode="masked", slow=lambda names: names[:1] == ["speech"], slow_factor=0.1)
    params = {"speech": {"w": jnp.ones((2, 2))}, "head": {"w": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["speech"]["w"]), 0.1 * np.asarray(updates["head"]["w"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["head"]["w"]), -1e-2, rtol=1e-3)


def _save_sfe(tmp_path, **model):
    config = load_config("configs/sfe.py:tiny")
    for k, v in model.items():
        config.model[k] = v
    config = freeze(config)
    task = sfe.build_task(config, epoch_steps=1)
    state = jax.jit(task.init)(jax.random.key(7))
    manager = CheckpointManager(tmp_path / "checkpoints", async_save=False)
    manager.save(5, state, force=True)
    manager.wait_until_finished()
    manager.close()
    return state


def test_initialisation_from_an_sfe_checkpoint_copies_the_speech_branch(tmp_path):
    sfe_state = _save_sfe(tmp_path)
    config = _config(**{"init.sfe_checkpoint": str(tmp_path)})
    task = mdn.build_task(config)
    state = jax.jit(task.init)(jax.random.key(0))
    want = nnx.to_pure_dict(sfe_state.params["sfe"]["speech"])
    got = nnx.to_pure_dict(state.params["speech"])
    flat_want = dict(jax.tree_util.tree_leaves_with_path(want))
    flat_got = dict(jax.tree_util.tree_leaves_with_path(got))
    assert flat_want.keys() == flat_got.keys() and len(flat_got) > 10
    for path, value in flat_want.items():
        np.testing.assert_array_equal(np.asarray(flat_got[path]), np.asarray(value), err_msg=jax.tree_util.keystr(path))
    # A scratch MDN differs (the copy is not an accident of equal seeds).
    scratch = jax.jit(mdn.build_task(_config()).init)(jax.random.key(0))
    assert not np.allclose(np.asarray(scratch.params["speech"]["gru"]["w_ih"][...]), np.asarray(state.params["speech"]["gru"]["w_ih"][...]))


def test_a_mismatched_or_missing_sfe_checkpoint_is_refused_with_the_fix(tmp_path):
    _save_sfe(tmp_path / "wide", gru_hidden=16)
    mdn.load_sfe_speech.cache_clear()
    task = mdn.build_task(_config(**{"init.sfe_checkpoint": str(tmp_path / "wide")}))
    with pytest.raises(mdn.MDNInitError, match="gru_hidden"):
        jax.eval_shape(task.init, jax.random.key(0))
    with pytest.raises(mdn.MDNInitError, match="no SFE checkpoint"):
        mdn.build_task(_config(**{"init.sfe_checkpoint": str(tmp_path / "missing")}))


def test_code_faithful_loss_needs_the_shared_sigma():
    with pytest.raises(ValueError, match="sigma=shared"):
        mdn.build_task(_config(**{"loss.code_faithful": True}))
    mdn.build_task(_config(**{"loss.code_faithful": True, "model.sigma": "shared"}))


@pytest.mark.parametrize("overrides", [{}, {"loss.code_faithful": True, "model.sigma": "shared"}, {"model.regression": "a", "loss.lip_l1": 1.0}])
def test_steps_on_a_fixed_batch_lower_the_loss(tiny_clips, overrides):
    config = _config(**{"model.head_dropout": 0.0, **overrides})
    task = mdn.build_task(config)
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    state, shardings, _ = create_state(task, jax.random.key(0), mesh)
    step = make_step_fn(task, shardings)
    losses = []
    with jax.set_mesh(mesh):
        batch = to_global_batch(tiny_clips[0], mesh)
        for _ in range(15):
            state, metrics = step(state, batch, jax.random.key(1))
            losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


def test_evaluator_baselines_match_a_direct_computation(tiny_clips):
    """The static baseline's M-LMD is the reference frame's landmarks held still, scored by hand."""
    batch, source = tiny_clips
    config = _config()
    task = mdn.build_task(config)
    state = jax.jit(task.init)(jax.random.key(0))
    evaluator = mdn.LandmarkEval("test", task, config, np.zeros((68, 2), np.float32), pixel_scale=4.0)
    out = jax.jit(evaluator.per_example)(state, {k: jnp.asarray(v) for k, v in batch.items()})
    truth = batch["landmarks"].astype(np.float64) * 4.0
    for b in range(truth.shape[0]):
        still = truth[b, batch["reference_index"][b]]
        per_frame = []
        for t in range(truth.shape[1]):
            p, q = still[48:68] - still[48:68].mean(0), truth[b, t, 48:68] - truth[b, t, 48:68].mean(0)
            per_frame.append(np.linalg.norm(p - q, axis=-1).mean())
        np.testing.assert_allclose(float(out["m_lmd_static"][b]), np.mean(per_frame), rtol=1e-4)
    # With a zero mean offset, the mean-mouth baseline is the static one.
    np.testing.assert_allclose(np.asarray(out["m_lmd_mean_mouth"]), np.asarray(out["m_lmd_static"]), rtol=1e-3)
    assert mdn.frame_size(source) == 64
    assert np.all(np.asarray(out["rd_static"]) >= 0)


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
    own = mdn.speech_input({"audio": audio}, _config(), jnp.float32)
    other = mdn.speech_input({"audio": audio}, _config(**{"model.speech_input": "other_clip"}), jnp.float32)
    np.testing.assert_array_equal(own, audio)
    np.testing.assert_array_equal(other, audio[jnp.array([3, 0, 1, 2])])
    with pytest.raises(ValueError, match="config.model.speech_input"):
        mdn.check_config(_config(**{"model.speech_input": "silence"}))
