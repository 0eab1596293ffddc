"""The landmark evaluator of the MDN (macl_jax.evals.mdn): its baselines against a direct computation."""

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.config import freeze, load_config
from macl_jax.evals.mdn import LandmarkEval, frame_size
from macl_jax.train import mdn


def test_evaluator_baselines_match_a_direct_computation(mdn_test_clips):
    """The static baseline's M-LMD is the reference frame's landmarks held still, scored by hand."""
    batch, source = mdn_test_clips
    config = freeze(load_config("configs/mdn.py:tiny"))
    task = mdn.build_task(config)
    state = jax.jit(task.init)(jax.random.key(0))
    evaluator = LandmarkEval("test", mdn.predictor(task, config), config, np.zeros((68, 2), np.float32), pixel_scale=4.0)
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
    assert frame_size(source) == 64
    assert np.all(np.asarray(out["rd_static"]) >= 0)
