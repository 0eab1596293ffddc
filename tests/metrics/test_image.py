"""PSNR against the numpy closed form, SSIM against scikit-image in both window conventions."""

import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from macl_jax.metrics.image import psnr, psnr_from_mse, ssim

SKIMAGE_KW = {"skimage": {}, "gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}}


def _pairs(data_range):
    """Real photo content at several distortion levels, scaled to [0, data_range]."""
    rng = np.random.default_rng(0)
    a = data.astronaut()[100:164, 150:230].astype(np.float64) / 255.0  # 64x80, face and edges
    c = data.chelsea()[:64, :80].astype(np.float64) / 255.0
    x = np.stack([a, a, c, np.zeros_like(a) + 0.5])
    y = np.stack([
        np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1),
        np.clip(a * 0.8 + 0.1, 0, 1),  # contrast/brightness change
        a,  # different image
        np.clip(0.5 + rng.normal(0, 0.01, a.shape), 0, 1),  # near-flat: variances ~ 0
    ])
    return x * data_range, y * data_range


@pytest.mark.parametrize("data_range", [255.0, 1.0])
def test_psnr_closed_form(data_range):
    x, y = _pairs(data_range)
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(1)
    np.testing.assert_allclose(np.asarray(psnr(x, y, data_range=data_range)), 10 * np.log10(data_range**2 / mse), rtol=1e-5)
    assert np.isinf(np.asarray(psnr(x, x, data_range=data_range))).all()
    assert psnr_from_mse(float(mse[0]), data_range) == pytest.approx(10 * np.log10(data_range**2 / mse[0]))


@pytest.mark.parametrize("convention", ["skimage", "gaussian"])
@pytest.mark.parametrize("data_range", [255.0, 1.0])
def test_ssim_matches_skimage(convention, data_range):
    x, y = _pairs(data_range)
    ref = np.array([
        structural_similarity(xi, yi, channel_axis=-1, data_range=data_range, **SKIMAGE_KW[convention])
        for xi, yi in zip(x, y)
    ])
    got = np.asarray(ssim(x.astype(np.float32), y.astype(np.float32), data_range=data_range, convention=convention))
    assert got.shape == (len(x),)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(ssim(x, x, data_range=data_range, convention=convention)), 1.0, atol=1e-5)


def test_ssim_uint8_input_and_window_sizes():
    x = data.astronaut()[None, :40, :40]
    y = np.clip(x.astype(int) + 30, 0, 255).astype(np.uint8)
    ref = structural_similarity(x[0], y[0], channel_axis=-1, data_range=255)
    assert float(ssim(x, y, convention="skimage")[0]) == pytest.approx(ref, abs=1e-4)
    # Conventions differ (the point of naming them).
    assert abs(float(ssim(x, y, convention="gaussian")[0]) - ref) > 1e-3


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        psnr(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 9, 3)))
    with pytest.raises(ValueError, match="11x11 window"):
        ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="convention"):
        ssim(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3)), convention="matlab")
