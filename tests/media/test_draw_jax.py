"""The JAX landmark raster against the numpy one (itself pixel-identical to OpenCV)."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from macl_jax.media.draw import landmark_raster
from macl_jax.media.draw_jax import COORD_LIMIT, landmark_raster_jax, mul_div_trunc


def _synthtalk_landmarks(size: int) -> np.ndarray:
    from data_pipelines.synthtalk.clip import generate_clip
    from data_pipelines.synthtalk.specs import variant

    clip = generate_clip(variant("voxceleb_like", "tiny", image_size=size), "train", 0, 0)
    return clip.landmarks_2d[::4]  # 16 frames of a talking, moving head


@pytest.mark.parametrize("size", [64, 128, 256])
def test_equals_numpy_raster_on_random_and_synthtalk_landmarks(size):
    rng = np.random.default_rng(size)
    on_canvas = rng.uniform(0, size, (6, 68, 2))
    # Segments leaving the canvas exercise the clipping; integer-valued points the exact ties.
    straddling = rng.uniform(-0.5 * size, 1.5 * size, (6, 68, 2))
    integers = rng.integers(-3, size + 3, (4, 68, 2)).astype(np.float64)
    real = _synthtalk_landmarks(size)
    points = np.concatenate([on_canvas, straddling, integers, real]).astype(np.float32)
    got = np.asarray(landmark_raster_jax(jnp.asarray(points), size))
    want = landmark_raster(points, size)
    assert got.shape == want.shape == (len(points), size, size, 3)
    differing = np.any(got != want, axis=-1)
    assert differing.sum() == 0, f"{differing.sum()} pixels differ in frames {np.flatnonzero(differing.any((1, 2)))}"
    assert (want != 255).any(axis=-1).sum() > 100 * len(points)  # something was drawn in every frame


def test_batch_dims_jit_and_far_points():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 32, (2, 3, 68, 2)).astype(np.float32)
    points[0, 0, :17] += 3000.0  # the jaw far off the canvas (inside COORD_LIMIT): clipped away
    points[1, 2, 40] = -COORD_LIMIT / 2
    got = jax.jit(landmark_raster_jax, static_argnames="size")(points, size=32)
    np.testing.assert_array_equal(np.asarray(got), landmark_raster(points, 32))


def test_input_errors():
    with pytest.raises(ValueError, match="68, 2"):
        landmark_raster_jax(np.zeros((5, 2), np.float32), 32)
    with pytest.raises(ValueError, match="size"):
        landmark_raster_jax(np.zeros((68, 2), np.float32), 0)


def test_mul_div_trunc_is_exact_for_62_bit_products():
    rng = np.random.default_rng(0)
    n = 20000
    c = rng.integers(1, 2**31 - 1, n) * rng.choice([-1, 1], n)
    a = (rng.random(n) * np.abs(c)).astype(np.int64) * rng.choice([-1, 1], n)  # |a| <= |c|
    b = rng.integers(-(2**31) + 1, 2**31 - 1, n)
    got = np.asarray(mul_div_trunc(jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32), jnp.asarray(c, jnp.int32)))
    # Python integers: exact, truncation toward zero as C does.
    want = [(-1 if (x < 0) ^ (y < 0) ^ (z < 0) else 1) * (abs(int(x) * int(y)) // abs(int(z))) for x, y, z in zip(a, b, c)]
    np.testing.assert_array_equal(got, np.asarray(want))
