"""The MDN's speech branch initialised from an SFE checkpoint (macl_jax.checkpoint.pretrained)."""

import jax
import numpy as np
import pytest
from flax import nnx

from macl_jax.checkpoint import CheckpointManager
from macl_jax.checkpoint.pretrained import MDNInitError, load_sfe_speech
from macl_jax.config import freeze, load_config
from macl_jax.train import mdn, sfe


def _mdn_config(*overrides: str):
    return freeze(load_config("configs/mdn.py:tiny", overrides))


def _save_sfe(tmp_path, *overrides: str):
    config = freeze(load_config("configs/sfe.py:tiny", overrides))
    task = sfe.build_task(config, epoch_steps=1)
    state = jax.jit(task.init)(jax.random.key(7))
    manager = CheckpointManager(tmp_path / "checkpoints", async_save=False)
    manager.save(5, state, force=True)
    manager.wait_until_finished()
    manager.close()
    return state


def test_initialisation_from_an_sfe_checkpoint_copies_the_speech_branch(tmp_path):
    sfe_state = _save_sfe(tmp_path)
    config = _mdn_config(f"init.sfe_checkpoint={tmp_path}")
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
    scratch = jax.jit(mdn.build_task(_mdn_config()).init)(jax.random.key(0))
    assert not np.allclose(np.asarray(scratch.params["speech"]["gru"]["w_ih"][...]), np.asarray(state.params["speech"]["gru"]["w_ih"][...]))


def test_a_mismatched_or_missing_sfe_checkpoint_is_refused_with_the_fix(tmp_path):
    _save_sfe(tmp_path / "wide", "model.gru_hidden=16")
    load_sfe_speech.cache_clear()
    task = mdn.build_task(_mdn_config(f"init.sfe_checkpoint={tmp_path / 'wide'}"))
    with pytest.raises(MDNInitError, match="gru_hidden"):
        jax.eval_shape(task.init, jax.random.key(0))
    with pytest.raises(MDNInitError, match="no SFE checkpoint"):
        mdn.build_task(_mdn_config(f"init.sfe_checkpoint={tmp_path / 'missing'}"))
