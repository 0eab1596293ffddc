"""The fused SFE augmentation against per-frame numpy/colorsys implementations."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.media import augment


def _np_grey(x):
    return x @ np.array([0.2989, 0.587, 0.114])


def _np_op(x, which, b, c, s, h):
    if which == 0:
        return np.clip(x * b, 0, 1)
    if which == 1:
        return np.clip(c * x + (1 - c) * _np_grey(x).mean(), 0, 1)
    if which == 2:
        return np.clip(s * x + (1 - s) * _np_grey(x)[..., None], 0, 1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        hh, ss, vv = colorsys.rgb_to_hsv(*x[idx])
        out[idx] = colorsys.hsv_to_rgb((hh + h) % 1.0, ss, vv)
    return out


def test_hsv_round_trip_matches_colorsys():
    rgb = np.random.default_rng(0).uniform(size=(50, 3))
    rgb[:5] = [[0.3, 0.3, 0.3], [0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 0.5, 0.5]]  # grey, black, white, pure hues
    hsv = np.asarray(augment.rgb_to_hsv(jnp.asarray(rgb)))
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
    np.testing.assert_allclose(hsv, ref, atol=1e-6)
    np.testing.assert_allclose(np.asarray(augment.hsv_to_rgb(jnp.asarray(ref))), rgb, atol=1e-6)


def test_jitter_in_given_order_matches_numpy():
    rng = np.random.default_rng(1)
    frames = rng.uniform(size=(4, 5, 6, 3))
    factors = [rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4), rng.uniform(-0.25, 0.25, 4)]
    order = np.stack([rng.permutation(4) for _ in range(4)])
    out = np.asarray(augment.apply_jitter(jnp.asarray(frames, jnp.float32), *map(jnp.asarray, factors), jnp.asarray(order)))
    for n in range(4):
        x = frames[n]
        for which in order[n]:
            x = _np_op(x, which, *(f[n] for f in factors))
        np.testing.assert_allclose(out[n], x, atol=2e-5)


def test_random_grey_copies_one_channel_per_frame():
    frames = jnp.asarray(np.random.default_rng(2).uniform(size=(400, 2, 2, 3)), jnp.float32)
    out = np.asarray(augment.random_grey(jax.random.key(0), frames, p=0.25))
    changed = ~np.all(out == np.asarray(frames), axis=(1, 2, 3))
    assert 0.15 < changed.mean() < 0.35
    for f, o in zip(np.asarray(frames)[changed], out[changed]):
        assert np.all(o[..., 0] == o[..., 1]) and np.all(o[..., 1] == o[..., 2])
        assert any(np.array_equal(o[..., 0], f[..., c]) for c in range(3))


def test_sfe_augment_draws_frames_independently_and_keeps_range():
    frames = jnp.asarray(np.random.default_rng(3).integers(0, 256, size=(2, 3, 5, 8, 8, 3)), jnp.uint8)
    out = np.asarray(jax.jit(augment.sfe_augment)(jax.random.key(1), frames))
    assert out.shape == frames.shape and out.min() >= 0 and out.max() <= 1
    flat = out.reshape(-1, 8, 8, 3) - np.asarray(frames, np.float32).reshape(-1, 8, 8, 3) / 255
    ratios = [np.mean(np.abs(d)) for d in flat]
    assert len(set(np.round(ratios, 5))) > 20  # 30 frames, each with its own draw
