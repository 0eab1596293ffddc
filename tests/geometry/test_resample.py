"""Bilinear resampling against scipy's map_coordinates (order 1, edge clamping) and the
`align_corners=True` grid convention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from macl_jax.geometry.resample import bilinear_sample, grid_sample, warp


def _scipy_sample(image, x, y):
    """Per channel map_coordinates with clamped coordinates (= border padding)."""
    h, w, c = image.shape
    xc, yc = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    return np.stack([map_coordinates(image[..., k], [yc, xc], order=1, mode="nearest") for k in range(c)], -1)


def test_matches_scipy_inside_and_outside_the_image():
    rng = np.random.default_rng(0)
    image = rng.random((2, 7, 9, 3)).astype(np.float32)
    x = rng.uniform(-3, 11, (2, 5, 6)).astype(np.float32)
    y = rng.uniform(-3, 9, (2, 5, 6)).astype(np.float32)
    ours = np.asarray(bilinear_sample(jnp.asarray(image), jnp.asarray(x), jnp.asarray(y)))
    for b in range(2):
        np.testing.assert_allclose(ours[b], _scipy_sample(image[b], x[b], y[b]), rtol=1e-5, atol=1e-6)


def test_zero_flow_is_identity_and_integer_flow_shifts():
    image = jax.random.uniform(jax.random.key(0), (1, 6, 8, 2))
    np.testing.assert_allclose(warp(image, jnp.zeros((1, 6, 8, 2))), image, atol=1e-7)
    flow = jnp.zeros((1, 6, 8, 2)).at[..., 0].set(1.0)  # pull from one column to the right
    out = np.asarray(warp(image, flow))
    np.testing.assert_allclose(out[0, :, :-1], np.asarray(image)[0, :, 1:], atol=1e-6)
    np.testing.assert_allclose(out[0, :, -1], np.asarray(image)[0, :, -1], atol=1e-6)  # border padding


def test_grid_corners_are_pixel_centres():
    image = jax.random.uniform(jax.random.key(1), (1, 5, 4, 1))
    grid = jnp.array([[[[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]]])
    out = np.asarray(grid_sample(image, grid))[0, 0, :, 0]
    img = np.asarray(image)[0, ..., 0]
    np.testing.assert_allclose(out, [img[0, 0], img[-1, -1], img[0, -1]], atol=1e-6)


def test_gradient_in_the_flow_matches_finite_differences():
    image = jax.random.uniform(jax.random.key(2), (1, 6, 6, 1))
    flow = jax.random.uniform(jax.random.key(3), (1, 6, 6, 2), minval=-1.3, maxval=1.3)

    def f(fl):
        return jnp.sum(warp(image, fl) ** 2)

    g = np.asarray(jax.grad(f)(flow))
    eps = 1e-3
    for idx in [(0, 2, 3, 0), (0, 3, 2, 1), (0, 1, 4, 0)]:
        # Only the output pixel at idx depends on flow[idx]: difference that pixel alone (float32).
        def pixel(fl, i=idx):
            return jnp.sum(warp(image, fl)[i[:3]] ** 2)

        d = jnp.zeros_like(flow).at[idx].set(eps)
        fd = (pixel(flow + d) - pixel(flow - d)) / (2 * eps)
        assert g[idx] == pytest.approx(float(fd), rel=1e-2, abs=1e-4)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="flow must be"):
        warp(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 5, 2)))
    with pytest.raises(ValueError, match="grid must be"):
        grid_sample(jnp.zeros((1, 4, 4, 3)), jnp.zeros((1, 4, 4, 3)))
