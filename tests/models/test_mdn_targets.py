"""The MDN's regression target and the way back to pixel landmarks (macl_jax.models.mdn_targets)."""

import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.config import freeze, load_config
from macl_jax.geometry import savgol_smooth
from macl_jax.models import mdn_targets


@pytest.mark.parametrize("regression,relative", [("tt", True), ("tt", False), ("a", True)])
def test_decoding_the_target_gives_back_the_pixel_landmarks(mdn_test_clips, regression, relative):
    """target -> (de-align, re-anchor on the reference pose) -> de-normalise inverts the preprocessing
    of docs/decisions.md#d7-landmark-preprocessing."""
    batch = {k: jnp.asarray(v) for k, v in mdn_test_clips[0].items()}
    y = mdn_targets.target(batch, regression, relative)
    assert y.shape[-1] == (139 if regression == "tt" else 136)
    anchor = batch if relative else None
    pixels = mdn_targets.to_pixels(mdn_targets.to_normalised_landmarks(y, regression, anchor), batch)
    np.testing.assert_allclose(np.asarray(pixels), mdn_test_clips[0]["landmarks"], atol=2e-3)
    # With a component axis (B, T, M, 68, 2) every component decodes the same way.
    stacked = jnp.stack([y, y], axis=2)
    both = mdn_targets.to_pixels(mdn_targets.to_normalised_landmarks(stacked, regression, anchor), batch)
    np.testing.assert_allclose(np.asarray(both[:, :, 1]), mdn_test_clips[0]["landmarks"], atol=2e-3)
    if relative and regression == "tt":
        # The reference frame's own relative pose is zero.
        rows = np.arange(y.shape[0])
        np.testing.assert_allclose(np.asarray(y[rows, batch["reference_index"], 136:]), 0.0, atol=1e-6)


def test_on_device_smoothing_equals_savitzky_golay():
    x = np.random.default_rng(0).normal(size=(2, 60, 68, 2)).astype(np.float32)
    config = freeze(load_config("configs/mdn.py:tiny"))
    got = mdn_targets.smooth_time(jnp.asarray(x), config)
    np.testing.assert_allclose(np.asarray(got), savgol_smooth(x, 7, 3, axis=1), atol=1e-4)
