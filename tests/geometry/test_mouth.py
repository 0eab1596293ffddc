import numpy as np
import pytest

from macl_jax.geometry import closed_mouth_frame, inner_lip_area, mouth_openness


def _frame_with_inner_lip(rng, lip):
    x = rng.normal(scale=50, size=(68, 2))
    x[60:68] = lip
    return x


def _shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _heron_fan(poly):
    """Sum of unsigned fan-triangle areas from vertex 0, each by Heron's formula (no cross products)."""
    total = 0.0
    for i in range(1, len(poly) - 1):
        a, b, c = (np.linalg.norm(p - q) for p, q in ((poly[0], poly[i]), (poly[i], poly[i + 1]), (poly[i + 1], poly[0])))
        s = (a + b + c) / 2
        total += np.sqrt(max(s * (s - a) * (s - b) * (s - c), 0.0))
    return total


def test_convex_octagons_match_the_shoelace_formula():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = np.sort(rng.uniform(0, 2 * np.pi, 8))
        if rng.random() < 0.5:
            t = t[::-1]  # either orientation
        lip = np.stack([rng.uniform(5, 30) * np.cos(t), rng.uniform(2, 10) * np.sin(t)], -1) + rng.normal(size=2) * 100
        frame = _frame_with_inner_lip(rng, lip)
        assert inner_lip_area(frame) == pytest.approx(_shoelace(lip), rel=1e-12)
        assert inner_lip_area(frame, convention="shoelace") == pytest.approx(_shoelace(lip), rel=1e-12)


def test_hand_made_shapes():
    rng = np.random.default_rng(1)
    # Open mouth: a 4 x 2 hexagon-like lip (corners 60, 64); 1 + 4 + 1 by trapezoids.
    open_lip = np.array([[0, 0], [1, -1], [2, -1], [3, -1], [4, 0], [3, 1], [2, 1], [1, 1]], float)
    assert inner_lip_area(_frame_with_inner_lip(rng, open_lip)) == pytest.approx(6.0)
    # Closed mouth: upper and lower inner lip on one line.
    flat = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [3, 0], [2, 0], [1, 0]], float)
    assert inner_lip_area(_frame_with_inner_lip(rng, flat)) == 0.0
    # Crossed lips (a bow tie (0,0)-(2,2)-(2,0)-(0,2) with edge midpoints): the fan sums both lobes
    # (1 + 1 + 1 + 1 = 4) where the signed polygon area cancels to 0.
    bow = np.array([[0, 0], [1, 1], [2, 2], [2, 1], [2, 0], [1, 1], [0, 2], [0, 1]], float)
    frame = _frame_with_inner_lip(rng, bow)
    assert inner_lip_area(frame) == pytest.approx(4.0)
    assert inner_lip_area(frame, convention="shoelace") == pytest.approx(0.0, abs=1e-12)


def test_non_convex_lips_match_heron_fan_and_batching():
    rng = np.random.default_rng(2)
    frames = rng.normal(scale=10, size=(3, 4, 68, 3))  # 3-D landmarks: z is ignored
    got = inner_lip_area(frames)
    for idx in np.ndindex(3, 4):
        assert got[idx] == pytest.approx(_heron_fan(frames[idx][60:68, :2]), rel=1e-9)
    assert inner_lip_area(frames.astype(np.float32)).dtype == np.float32


def test_mouth_openness_by_hand():
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(5, 68, 2))
    want = [np.mean([abs(f[p, c] - f[q, c]) for p, q in ((61, 67), (62, 66), (63, 65)) for c in (0, 1)]) for f in frames]
    np.testing.assert_allclose(mouth_openness(frames), want, rtol=1e-13)


def _talking_clip(rng, gaps):
    """A clip whose inner lips open by gaps[t] (upper lip fixed, lower lip lowered)."""
    t = len(gaps)
    clip = np.broadcast_to(rng.normal(scale=30, size=(68, 2)), (t, 68, 2)).copy()
    upper = np.array([[10, 0], [12, -1], [14, -1.5], [16, -1], [18, 0]], float)  # 60..64
    clip[:, 60:65] = upper
    lower = np.array([[16, 1], [14, 1.5], [12, 1]], float)  # 65..67
    clip[:, 65:68] = lower + np.stack([np.zeros(t), gaps], -1)[:, None, :]
    return clip + rng.normal(scale=0.01, size=(t, 1, 2))  # small rigid jitter does not change areas


def test_closed_mouth_frame_picks_the_constructed_frame():
    rng = np.random.default_rng(4)
    gaps = np.array([3.0, 2.5, 4.0, 1.0, 2.0, 0.6, 3.0, 0.0, 1.5, 2.2, 0.3, 5.0])
    clip = _talking_clip(rng, gaps)
    assert closed_mouth_frame(clip) == 7
    assert closed_mouth_frame(clip, method="openness") == 7
    # Every 5th frame (0, 5, 10): frame 10 (gap 0.3) beats frame 5 (0.6); index is into the full clip.
    assert closed_mouth_frame(clip, stride=5) == 10
    assert isinstance(closed_mouth_frame(clip), int)
    batch = np.stack([clip, clip[::-1]])
    np.testing.assert_array_equal(closed_mouth_frame(batch), [7, 4])
    with pytest.raises(ValueError, match="stride"):
        closed_mouth_frame(clip, stride=0)


def test_jax_matches_numpy():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(5)
    clips = rng.normal(scale=5, size=(2, 9, 68, 2)).astype(np.float32)
    for fn in (inner_lip_area, mouth_openness):
        np.testing.assert_allclose(np.asarray(jax.jit(fn)(jnp.asarray(clips))), fn(clips.astype(np.float64)), rtol=1e-5)
    got = jax.jit(lambda c: closed_mouth_frame(c, stride=2))(jnp.asarray(clips))
    np.testing.assert_array_equal(np.asarray(got), closed_mouth_frame(clips, stride=2))
