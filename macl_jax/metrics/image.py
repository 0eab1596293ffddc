"""Per-image fidelity metrics: PSNR and SSIM (pure jnp, jit-able, one value per image).

Inputs are (B, H, W, C) float arrays in [0, data_range] (data_range=255 for uint8-scaled frames,
1.0 for [0, 1] images). Integer inputs are accepted and cast to float32.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

SSIM_CONVENTIONS = ("skimage", "gaussian")


def _pair(x: jax.Array, y: jax.Array, fn: str) -> tuple[jax.Array, jax.Array]:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"{fn}: x and y must both be (B, H, W, C), got {x.shape} and {y.shape}")
    return x.astype(jnp.float32), y.astype(jnp.float32)


# Jitted (static options) so that eager calls compile once per shape instead of per op.
@functools.partial(jax.jit, static_argnames=("data_range",))
def psnr(x: jax.Array, y: jax.Array, *, data_range: float = 255.0) -> jax.Array:
    """10 log10(data_range^2 / MSE) per image, MSE over all pixels and channels -> (B,).

    Identical images give +inf (as skimage; ATVGnet's script returned 100 instead).
    """
    x, y = _pair(x, y, "psnr")
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    return 10.0 * jnp.log10(jnp.float32(data_range) ** 2 / mse)


def _window(convention: str) -> np.ndarray:
    """The 1-D separable SSIM window (sums to 1)."""
    if convention == "skimage":
        return np.full(7, 1.0 / 7.0)
    if convention == "gaussian":
        # scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.5), as skimage gaussian_weights=True: 11 taps.
        sigma = 1.5
        radius = int(3.5 * sigma + 0.5)
        t = np.arange(-radius, radius + 1, dtype=np.float64)
        w = np.exp(-0.5 * (t / sigma) ** 2)
        return w / w.sum()
    raise ValueError(f"ssim: convention must be one of {SSIM_CONVENTIONS}, got {convention!r}")


def _filter_valid(x: jax.Array, w: np.ndarray) -> jax.Array:
    """Separable filter of (N, H, W, C) along H and W, 'valid' region only.

    skimage filters with reflect padding and then crops (win - 1) // 2 pixels per border, so
    the padded values never reach the mean: a valid filter gives the same numbers. Written as
    a weighted sum of shifted slices: exact float32 on every backend (no reduced-precision conv
    passes on GPU/TPU) and it fuses into one loop, where XLA's CPU depthwise conv is slow.
    """
    win = len(w)
    for axis in (1, 2):
        n = x.shape[axis] - win + 1
        x = sum(float(w[k]) * jax.lax.slice_in_dim(x, k, k + n, axis=axis) for k in range(win))
    return x


@functools.partial(jax.jit, static_argnames=("data_range", "convention"))
def ssim(x: jax.Array, y: jax.Array, *, data_range: float = 255.0, convention: str = "gaussian") -> jax.Array:
    """Structural similarity per image (mean over pixels and channels) -> (B,).

    Conventions (K1 = 0.01, K2 = 0.03, C = (K L)^2, L = data_range; the map's border of
    (win - 1) // 2 pixels is excluded as skimage does):
    * "skimage": 7x7 uniform window, sample (N-1) covariance; equals
      `skimage.metrics.structural_similarity(x, y, channel_axis=-1, data_range=L)`
      (what ATVGnet and the EAT benchmark report).
    * "gaussian": 11x11 Gaussian window, sigma 1.5, population covariance (Wang et al. 2004;
      skimage with gaussian_weights=True, use_sample_covariance=False).
    Images must be at least the window size (7 or 11 px) in height and width.
    """
    x, y = _pair(x, y, "ssim")
    w = _window(convention)
    win = len(w)
    if x.shape[1] < win or x.shape[2] < win:
        raise ValueError(f"ssim: images of {x.shape[1]}x{x.shape[2]} px are smaller than the {win}x{win} window")
    # SSIM is invariant to scaling x, y and L together; [0, 1] keeps float32 variances
    # (E[x^2] - E[x]^2) from cancelling catastrophically at L = 255.
    x = x / jnp.float32(data_range)
    y = y / jnp.float32(data_range)
    c1, c2 = 0.01**2, 0.03**2
    n = x.shape[0]
    # One filter call over the five moments, stacked along the batch axis.
    moments = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=0), w)
    mx, my, mxx, myy, mxy = (moments[i * n : (i + 1) * n] for i in range(5))
    cov_norm = win * win / (win * win - 1.0) if convention == "skimage" else 1.0
    vx = cov_norm * (mxx - mx * mx)
    vy = cov_norm * (myy - my * my)
    vxy = cov_norm * (mxy - mx * my)
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return jnp.mean(s, axis=(1, 2, 3))


def psnr_from_mse(mse: float, data_range: float = 255.0) -> float:
    """PSNR of a pooled MSE (e.g. over a whole video), for reporting alongside per-frame means."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)
