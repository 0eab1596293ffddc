import numpy as np
import pytest
from scipy.signal import savgol_filter

from macl_jax.geometry import interpolate_gaps, savgol_smooth


def test_savgol_matches_scipy_on_clips_and_batches():
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(40, 68, 2)).cumsum(0)
    np.testing.assert_array_equal(savgol_smooth(clip), savgol_filter(clip, 7, 3, axis=0, mode="interp"))
    batch = rng.normal(size=(3, 25, 68, 2))
    np.testing.assert_allclose(savgol_smooth(batch, 9, 2, axis=1), savgol_filter(batch, 9, 2, axis=1, mode="interp"), atol=1e-13)
    f32 = clip.astype(np.float32)
    out = savgol_smooth(f32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, savgol_filter(clip, 7, 3, axis=0, mode="interp"), atol=1e-4)


def test_savgol_keeps_cubic_tracks_including_the_edges():
    t = np.linspace(-1, 1, 30)
    track = np.stack([2 * t**3 - t + 0.5, -t**2 + 3 * t], -1)
    np.testing.assert_allclose(savgol_smooth(track), track, atol=1e-12)
    # and actually smooths noise: the residual energy drops.
    rng = np.random.default_rng(1)
    noisy = track + rng.normal(scale=0.1, size=track.shape)
    assert np.sum((savgol_smooth(noisy) - track) ** 2) < 0.7 * np.sum((noisy - track) ** 2)


@pytest.mark.parametrize(("length", "used_window"), [(7, 7), (6, 5), (5, 5), (4, None), (3, None), (1, None), (0, None)])
def test_short_clips_fall_back(length, used_window):
    rng = np.random.default_rng(length)
    clip = rng.normal(size=(length, 68, 2))
    got = savgol_smooth(clip)
    if used_window is None:
        np.testing.assert_array_equal(got, clip)
    else:
        np.testing.assert_allclose(got, savgol_filter(clip, used_window, 3, axis=0, mode="interp"), atol=1e-13)


def test_savgol_rejects_bad_parameters():
    with pytest.raises(ValueError, match="window"):
        savgol_smooth(np.zeros((10, 2)), window=6)
    with pytest.raises(ValueError, match="order"):
        savgol_smooth(np.zeros((10, 2)), window=5, order=5)


def test_interpolate_gaps_matches_np_interp():
    rng = np.random.default_rng(2)
    t = 40
    track = rng.normal(size=(t, 68, 2))
    valid = np.ones(t, bool)
    valid[[0, 1]] = False  # leading: no left neighbour
    valid[5] = False  # gap 1
    valid[9:12] = False  # gap 3
    valid[15:20] = False  # gap 5 (the limit)
    valid[24:30] = False  # gap 6: too long
    valid[39] = False  # trailing
    filled, missing = interpolate_gaps(track, valid, max_gap=5)
    fillable = np.zeros(t, bool)
    fillable[[5, 9, 10, 11, 15, 16, 17, 18, 19]] = True
    np.testing.assert_array_equal(missing, ~valid & ~fillable)
    frames = np.flatnonzero(valid)
    flat = track.reshape(t, -1)
    want = np.stack([np.interp(np.arange(t), frames, flat[frames, k]) for k in range(flat.shape[1])], -1).reshape(track.shape)
    np.testing.assert_allclose(filled[fillable], want[fillable], atol=1e-12)
    np.testing.assert_array_equal(filled[~fillable], track[~fillable])

    none, still = interpolate_gaps(track, valid, max_gap=0)
    np.testing.assert_array_equal(none, track)
    np.testing.assert_array_equal(still, ~valid)
    _, still3 = interpolate_gaps(track, valid, max_gap=3)
    assert still3[15:20].all() and not still3[9:12].any()


def test_interpolate_gaps_validates_inputs():
    with pytest.raises(ValueError, match="valid"):
        interpolate_gaps(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="frames"):
        interpolate_gaps(np.zeros((5, 2)), np.ones(4, bool))
