import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from macl_jax.geometry import (
    ANCHOR_T_SHAPE_9,
    T_SHAPE_INDICES,
    align_2d,
    dealign_2d,
    denormalise_scale,
    normalise_scale,
    rotation_2d,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
IDX = list(T_SHAPE_INDICES)


def _rot(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _face_on_anchor(rng, lead=()):
    """Random 68-point frames whose T-shape points are exactly the anchor."""
    x = rng.normal(scale=0.4, size=lead + (68, 2))
    x[..., IDX, :] = ANCHOR_T_SHAPE_9
    return x


def _closed_form_rotation(src, dst):
    """Independent 2-D optimum: the best proper rotation angle is atan2(sum a x b, sum a . b)."""
    a = src - src.mean(-2, keepdims=True)
    b = dst - dst.mean(-2, keepdims=True)
    cross = np.sum(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0], -1)
    dot = np.sum(a * b, axis=(-2, -1))
    return np.arctan2(cross, dot)


def test_anchor_constant_matches_its_normalisation():
    # Appendix A: divided by the 36-45 x-distance, centred on the mean of points 33, 36, 45.
    rows = {p: k for k, p in enumerate(T_SHAPE_INDICES)}
    assert ANCHOR_T_SHAPE_9.shape == (9, 2)
    assert abs(ANCHOR_T_SHAPE_9[rows[45], 0] - ANCHOR_T_SHAPE_9[rows[36], 0]) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(ANCHOR_T_SHAPE_9[[rows[33], rows[36], rows[45]]].mean(0), 0.0, atol=1e-4)


def test_recovers_known_rotation_and_translation_exactly():
    rng = np.random.default_rng(0)
    base = _face_on_anchor(rng, (12,))
    theta = np.concatenate([rng.uniform(-np.pi, np.pi, 8), [0.0, 1e-9, np.pi - 1e-9, -np.pi + 1e-9]])
    shift = rng.normal(scale=3.0, size=(12, 2))
    posed = base @ np.swapaxes(_rot(theta), -1, -2) + shift[:, None, :]
    res = align_2d(posed)
    np.testing.assert_allclose(res.aligned, base, atol=1e-12)
    np.testing.assert_allclose(res.aligned[:, IDX], np.broadcast_to(ANCHOR_T_SHAPE_9, (12, 9, 2)), atol=1e-12)
    # The alignment is the inverse pose: R = R0^T, t = -R0^T t0, angle = -theta (mod 2 pi).
    np.testing.assert_allclose(res.rotation, np.swapaxes(_rot(theta), -1, -2), atol=1e-12)
    np.testing.assert_allclose(res.translation, -np.einsum("nji,nj->ni", _rot(theta), shift), atol=1e-12)
    dtheta = np.angle(np.exp(1j * (res.angle + theta)))
    np.testing.assert_allclose(dtheta, 0.0, atol=1e-12)
    np.testing.assert_allclose(rotation_2d(res.angle), res.rotation, atol=1e-12)


def test_noisy_fit_is_the_least_squares_rotation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 68, 2))
    res = align_2d(x)
    np.testing.assert_allclose(np.angle(np.exp(1j * (res.angle - _closed_form_rotation(x[:, IDX], ANCHOR_T_SHAPE_9)))), 0.0, atol=1e-10)
    # The centroids coincide after alignment (t = c_anchor - R c_frame).
    np.testing.assert_allclose(res.aligned[:, IDX].mean(1), np.broadcast_to(ANCHOR_T_SHAPE_9.mean(0), (50, 2)), atol=1e-12)


def test_mirrored_faces_never_give_a_reflection():
    rng = np.random.default_rng(2)
    base = _face_on_anchor(rng, (20,)) + rng.normal(scale=0.02, size=(20, 68, 2))
    mirrored = base * np.array([-1.0, 1.0])  # left-right flip: the best orthogonal fit is a reflection
    for x in (base, mirrored, rng.normal(size=(20, 68, 2))):
        res = align_2d(x)
        det = np.linalg.det(res.rotation)
        np.testing.assert_allclose(det, 1.0, atol=1e-12)
        np.testing.assert_allclose(
            np.angle(np.exp(1j * (res.angle - _closed_form_rotation(x[:, IDX], ANCHOR_T_SHAPE_9)))), 0.0, atol=1e-10
        )


def test_dealign_inverts_align_and_batching_matches_loop():
    rng = np.random.default_rng(3)
    clips = rng.normal(size=(3, 10, 68, 2)) * 5 + 2
    res = align_2d(clips)
    np.testing.assert_allclose(dealign_2d(res.aligned, res.angle, res.translation), clips, atol=1e-10)
    for b in range(3):
        for t in range(10):
            one = align_2d(clips[b, t])
            for got, want in zip(one, res):
                np.testing.assert_allclose(got, want[b, t], atol=1e-13)


def test_float32_in_float32_out():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 68, 2)).astype(np.float32)
    res = align_2d(x)
    assert all(a.dtype == np.float32 for a in res)
    assert dealign_2d(res.aligned, res.angle, res.translation).dtype == np.float32
    np.testing.assert_allclose(res.aligned, align_2d(x.astype(np.float64)).aligned, atol=1e-6)


def test_normalise_scale_convention_and_inverse():
    rng = np.random.default_rng(5)
    clips = rng.normal(size=(2, 7, 68, 2)) * 30 + 128
    norm, scale, offset = normalise_scale(clips)
    for b in range(2):
        eye = np.mean([np.hypot(*(clips[b, t, 36] - clips[b, t, 45])) for t in range(7)])
        assert scale[b] == pytest.approx(eye, rel=1e-13)
        centre = np.mean([(clips[b, t, 33] + clips[b, t, 36] + clips[b, t, 45]) / 3 / eye for t in range(7)], axis=0)
        np.testing.assert_allclose(offset[b], centre, rtol=1e-12)
    # Normalised clips have unit mean eye distance and a zero mean (33, 36, 45) centroid.
    np.testing.assert_allclose(np.linalg.norm(norm[..., 36, :] - norm[..., 45, :], axis=-1).mean(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(norm[..., [33, 36, 45], :].mean(axis=(-3, -2)), 0.0, atol=1e-12)
    # Invariant to a uniform zoom and shift of the whole clip (what the crop does).
    np.testing.assert_allclose(normalise_scale(clips * 2.5 - 40.0)[0], norm, atol=1e-12)
    np.testing.assert_allclose(denormalise_scale(norm, scale, offset), clips, atol=1e-10)
    # Single frames of clip 1 with that clip's constants.
    np.testing.assert_allclose(denormalise_scale(norm[1, 3], scale[1], offset[1]), clips[1, 3], atol=1e-10)


def test_pixel_face_round_trip_through_the_pose_path():
    rng = np.random.default_rng(6)
    t = 8
    base = _face_on_anchor(rng, (t,))
    theta = rng.uniform(-0.3, 0.3, t)
    pixels = 82.0 * base @ np.swapaxes(_rot(theta), -1, -2) + np.array([128.0, 120.0]) + rng.normal(scale=2.0, size=(t, 1, 2))
    norm, scale, offset = normalise_scale(pixels)
    res = align_2d(norm)
    # Only the anchor's 36-45 Euclidean vs x distance (1.0003) separates the T-points from it.
    np.testing.assert_allclose(res.aligned[:, IDX], np.broadcast_to(ANCHOR_T_SHAPE_9, (t, 9, 2)), atol=1e-3)
    back = denormalise_scale(dealign_2d(res.aligned, res.angle, res.translation), scale, offset)
    np.testing.assert_allclose(back, pixels, atol=1e-9)


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="align_2d\\(landmarks\\)"):
        align_2d(np.zeros((68, 3)))
    with pytest.raises(ValueError, match="align_2d\\(anchor\\)"):
        align_2d(np.zeros((68, 2)), anchor=np.zeros((9, 3)))
    with pytest.raises(ValueError, match="normalise_scale"):
        normalise_scale(np.zeros((4, 68, 2)))


def test_jax_versions_match_numpy_under_jit():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(7)
    x = (rng.normal(size=(4, 6, 68, 2)) * 0.3).astype(np.float32)
    ref = align_2d(x.astype(np.float64))
    got = jax.jit(align_2d)(jnp.asarray(x))
    assert got.aligned.dtype == jnp.float32
    for g, r in zip(got, ref):
        np.testing.assert_allclose(np.asarray(g), r, atol=2e-5)
    back = jax.jit(dealign_2d)(got.aligned, got.angle, got.translation)
    np.testing.assert_allclose(np.asarray(back), x, atol=2e-5)
    np.testing.assert_allclose(
        np.asarray(jax.jit(dealign_2d)(jnp.asarray(x), jnp.asarray(ref.angle, jnp.float32), jnp.asarray(ref.translation, jnp.float32))),
        dealign_2d(x.astype(np.float64), ref.angle, ref.translation),
        atol=2e-5,
    )
    n_ref = normalise_scale(x.astype(np.float64) * 50 + 100)
    n_got = jax.jit(normalise_scale)(jnp.asarray(x * 50 + 100))
    for g, r in zip(n_got, n_ref):
        np.testing.assert_allclose(np.asarray(g), r, rtol=2e-5, atol=2e-5)
    d = jax.jit(denormalise_scale)(*n_got)
    np.testing.assert_allclose(np.asarray(d), x * 50 + 100, rtol=1e-5)
    # Gradients flow through the de-alignment used on predicted (theta, t).
    g = jax.grad(lambda th: jnp.sum(dealign_2d(jnp.asarray(x[0, 0]), th, jnp.zeros(2)) ** 2))(jnp.float32(0.3))
    assert abs(float(g)) < 1e-3  # a rotation preserves the squared norm


def test_importing_geometry_does_not_import_jax():
    code = "import sys, macl_jax.geometry; assert 'jax' not in sys.modules, 'jax imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
