"""LMD / LVD / rotation-distance metrics against plain-Python loops, scipy and closed forms."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from macl_jax.metrics.landmarks import (
    MOUTH,
    angle_distance_2d,
    f_lmd,
    landmark_velocity_error,
    lmd_atvgnet,
    m_lmd,
    per_point_error,
    rotation_distance,
    rotation_distance_euler,
)

B, T = 3, 6


# ----------------------------------------------------------------------------- references (loops)


def _centre(points):
    """Python-list centring of [(x, y), ...] on its own mean."""
    n = len(points)
    cx = sum(p[0] for p in points) / n
    cy = sum(p[1] for p in points) / n
    return [(p[0] - cx, p[1] - cy) for p in points]


def _frame_dists(p, q, idx, centre=True):
    a = [tuple(p[k]) for k in idx]
    b = [tuple(q[k]) for k in idx]
    if centre:
        a, b = _centre(a), _centre(b)
    return [math.hypot(u[0] - v[0], u[1] - v[1]) for u, v in zip(a, b)]


def _ref_lmd(pred, target, valid, idx, per_frame="mean"):
    """EAT formula, one clip: sum over valid frames and points / (valid frames x points)."""
    total, frames = 0.0, 0
    for t in range(pred.shape[0]):
        if not valid[t]:
            continue
        d = _frame_dists(pred[t], target[t], idx)
        total += sum(d) if per_frame == "sum" else sum(d) / len(idx)
        frames += 1
    return total / frames if frames else math.nan


def _ref_lvd(pred, target, valid, idx, centre):
    total, pairs = 0.0, 0
    for t in range(pred.shape[0] - 1):
        if not (valid[t] and valid[t + 1]):
            continue
        p0 = [tuple(pred[t][k]) for k in idx]
        p1 = [tuple(pred[t + 1][k]) for k in idx]
        q0 = [tuple(target[t][k]) for k in idx]
        q1 = [tuple(target[t + 1][k]) for k in idx]
        if centre:
            p0, p1, q0, q1 = _centre(p0), _centre(p1), _centre(q0), _centre(q1)
        d = 0.0
        for k in range(len(idx)):
            dpx, dpy = p1[k][0] - p0[k][0], p1[k][1] - p0[k][1]
            dqx, dqy = q1[k][0] - q0[k][0], q1[k][1] - q0[k][1]
            d += math.hypot(dpx - dqx, dpy - dqy)
        total += d / len(idx)
        pairs += 1
    return total / pairs if pairs else math.nan


def _wrap_deg(d):
    return (d + 180.0) % 360.0 - 180.0


def _batch(fn, *arrays):
    """Applies a one-clip reference to each leading index."""
    return np.array([fn(*(a[b] for a in arrays)) for b in range(arrays[0].shape[0])])


# ----------------------------------------------------------------------------- data


def _landmarks(seed=0):
    rng = np.random.default_rng(seed)
    target = rng.uniform(40, 220, size=(B, T, 68, 2))
    pred = target + rng.normal(0, 3, size=target.shape) + rng.normal(0, 10, size=(B, T, 1, 2))
    valid = rng.random((B, T)) < 0.7
    valid[0] = True
    valid[1, [0, 2, 4]] = False  # isolated valid frames: no valid pair for the velocity metrics
    valid[1, [1, 3, 5]] = True
    valid[2] = False  # a clip with no valid frame
    # Undetected frames hold garbage in real pipelines: must not leak into the result.
    pred[~valid] = np.nan
    return pred, target, valid


def _rotations(seed=0):
    rng = np.random.default_rng(seed)
    a = Rotation.random(B * T, random_state=rng.integers(1 << 31)).as_matrix().reshape(B, T, 3, 3)
    small = Rotation.from_rotvec(rng.normal(0, 0.3, size=(B * T, 3))).as_matrix().reshape(B, T, 3, 3)
    return a, a @ small


def _rz(deg):
    return Rotation.from_euler("z", deg, degrees=True).as_matrix()


# ----------------------------------------------------------------------------- LMD family


@pytest.mark.parametrize("name", ["m_lmd", "f_lmd", "lmd_atvgnet"])
def test_lmd_matches_loop_reference(name):
    pred, target, valid = _landmarks()
    fn, idx, mode = {
        "m_lmd": (m_lmd, range(48, 68), "mean"),
        "f_lmd": (f_lmd, range(68), "mean"),
        "lmd_atvgnet": (lmd_atvgnet, range(48, 68), "sum"),
    }[name]
    ref = _batch(lambda p, q, v: _ref_lmd(p, q, v, idx, mode), pred, target, valid)
    got = fn(pred, target, valid=valid)
    assert got.shape == (B,) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.isnan(got[2]) and np.all(np.isfinite(got[:2]))
    # Default mask = every frame (clean data, no NaN).
    clean = np.nan_to_num(pred, nan=0.0)
    ref_all = _batch(lambda p, q: _ref_lmd(p, q, [True] * T, idx, mode), clean, target)
    np.testing.assert_allclose(fn(clean, target), ref_all, rtol=1e-12)


@pytest.mark.parametrize("points,idx", [("mouth", range(48, 68)), ("face", range(68))])
@pytest.mark.parametrize("centre", [True, False])
def test_velocity_matches_loop_reference(points, idx, centre):
    pred, target, valid = _landmarks(1)
    valid[0] = [True, True, True, False, True, True]
    valid[1] = [True, True, False, True, False, True]  # one valid pair only: (0, 1)
    pred = np.where(valid[..., None, None], np.nan_to_num(pred), np.nan)
    ref = _batch(lambda p, q, v: _ref_lvd(p, q, v, idx, centre), pred, target, valid)
    got = landmark_velocity_error(pred, target, points=points, valid=valid, centre=centre)
    assert np.all(np.isfinite(got[:2])) and np.isnan(got[2])
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # EAT's face-LVD bug (mouth term added to the face accumulator) is not reproduced:
    # the face value differs from the mouth value on generic data.
    if points == "face":
        mouth = landmark_velocity_error(pred, target, points="mouth", valid=valid, centre=centre)
        assert not np.allclose(got[:2], mouth[:2])


def test_velocity_ignores_frame_translation_only_when_centred():
    _, target, _ = _landmarks(2)
    shift = np.random.default_rng(3).normal(0, 20, size=(B, T, 1, 2))
    pred = target + shift
    np.testing.assert_allclose(landmark_velocity_error(pred, target), 0.0, atol=1e-12)
    raw = landmark_velocity_error(pred, target, centre=False)
    # Raw displacements see the shift differences: every point moves by the same step.
    step = np.linalg.norm(shift[:, 1:, 0] - shift[:, :-1, 0], axis=-1).mean(-1)
    np.testing.assert_allclose(raw, step, rtol=1e-12)


def test_lmd_translation_invariant_per_frame_not_rotation_invariant():
    pred, target, _ = _landmarks(4)
    pred = np.nan_to_num(pred)
    shift = np.random.default_rng(5).normal(0, 30, size=(B, T, 1, 2))  # a different shift per frame
    for fn in (m_lmd, f_lmd, lmd_atvgnet):
        np.testing.assert_allclose(fn(pred + shift, target), fn(pred, target), rtol=1e-10)
        np.testing.assert_allclose(fn(target + shift, target), 0.0, atol=1e-10)

    # Rotating each frame's point set by 10 deg about its own centroid moves point k by
    # 2 r_k sin(5 deg), r_k its distance to the centroid: the metric must see exactly that.
    th = math.radians(10.0)
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    for fn, sl in ((m_lmd, MOUTH), (f_lmd, slice(0, 68))):
        sub = target[..., sl, :]
        c = sub.mean(-2, keepdims=True)
        rotated = target.copy()
        rotated[..., sl, :] = (sub - c) @ rot.T + c
        expected = (2 * math.sin(th / 2) * np.linalg.norm(sub - c, axis=-1)).mean(-1).mean(-1)
        got = fn(rotated, target)
        np.testing.assert_allclose(got, expected, rtol=1e-10)
        assert np.all(got > 1.0)


def test_atvgnet_is_20x_m_lmd_and_per_point_error():
    pred, target, _ = _landmarks(6)
    pred = np.nan_to_num(pred)
    np.testing.assert_allclose(lmd_atvgnet(pred, target), 20 * m_lmd(pred, target), rtol=1e-12)
    ppe = per_point_error(pred, target)
    assert ppe.shape == (B, T, 68)
    t, k = 2, 50
    assert ppe[1, t, k] == pytest.approx(math.hypot(*(pred[1, t, k] - target[1, t, k])))


def test_dtypes():
    pred, target, _ = _landmarks(7)
    pred = np.nan_to_num(pred)
    assert m_lmd(pred.astype(np.float32), target.astype(np.float32)).dtype == np.float32
    ints = m_lmd(np.round(pred).astype(np.int64), np.round(target).astype(np.int64))
    assert ints.dtype == np.float64
    ref = _batch(lambda p, q: _ref_lmd(p, q, [True] * T, range(48, 68)), np.round(pred), np.round(target))
    np.testing.assert_allclose(ints, ref, rtol=1e-12)


# ----------------------------------------------------------------------------- head pose


def test_rotation_distance_matches_scipy():
    a, b = _rotations()
    valid = np.random.default_rng(8).random((B, T)) < 0.6
    valid[0], valid[2] = True, False

    def ref(ra, rb, v):
        ang = [
            np.degrees((Rotation.from_matrix(ra[t]).inv() * Rotation.from_matrix(rb[t])).magnitude())
            for t in range(T)
            if v[t]
        ]
        return float(np.mean(ang)) if ang else math.nan

    got = rotation_distance(a, b, valid=valid)
    np.testing.assert_allclose(got, _batch(ref, a, b, valid), rtol=1e-10)
    assert np.isnan(got[2])


def test_rotation_distance_closed_forms():
    a, _ = _rotations(9)
    np.testing.assert_allclose(rotation_distance(a, a), 0.0, atol=1e-6)
    np.testing.assert_allclose(rotation_distance(a, a @ _rz(10.0)), 10.0, rtol=1e-10)
    np.testing.assert_allclose(rotation_distance(_rz(10.0) @ a, a), 10.0, rtol=1e-10)
    # Extrinsic 'zyx' is R = Rx(c) Ry(b) Rz(a), so R @ Rz(10) only moves a, by 10 of 3 angles.
    base = Rotation.from_euler("zyx", [30.0, 20.0, -15.0], degrees=True).as_matrix()
    np.testing.assert_allclose(rotation_distance_euler(base[None], (base @ _rz(10.0))[None]), 10.0 / 3, rtol=1e-10)


def test_rotation_distance_euler_matches_scipy_and_wraps():
    a, b = _rotations(10)
    valid = np.random.default_rng(11).random((B, T)) < 0.6
    valid[0], valid[2] = True, False
    for order in ("zyx", "XYZ"):

        def ref(ra, rb, v, order=order):
            vals = []
            for t in range(T):
                if v[t]:
                    ea = Rotation.from_matrix(ra[t]).as_euler(order, degrees=True)
                    eb = Rotation.from_matrix(rb[t]).as_euler(order, degrees=True)
                    vals.append(sum(abs(_wrap_deg(x - y)) for x, y in zip(ea, eb)) / 3)
            return sum(vals) / len(vals) if vals else math.nan

        got = rotation_distance_euler(a, b, valid=valid, order=order)
        np.testing.assert_allclose(got, _batch(ref, a, b, valid), rtol=1e-9, atol=1e-9)
    # Roll 179 vs -179 degrees is 2 degrees apart, not 358.
    r1 = Rotation.from_euler("zyx", [179.0, 5.0, 3.0], degrees=True).as_matrix()
    r2 = Rotation.from_euler("zyx", [-179.0, 5.0, 3.0], degrees=True).as_matrix()
    np.testing.assert_allclose(rotation_distance_euler(r1[None], r2[None]), 2.0 / 3, rtol=1e-9)


def test_angle_distance_2d():
    rng = np.random.default_rng(12)
    pa, ta = rng.uniform(-4, 4, size=(B, T)), rng.uniform(-4, 4, size=(B, T))
    valid = rng.random((B, T)) < 0.6
    valid[0], valid[2] = True, False

    def ref(p, q, v):
        vals = [abs(_wrap_deg(math.degrees(p[t]) - math.degrees(q[t]))) for t in range(T) if v[t]]
        return sum(vals) / len(vals) if vals else math.nan

    got = angle_distance_2d(pa, ta, valid=valid)
    np.testing.assert_allclose(got, _batch(ref, pa, ta, valid), rtol=1e-10)
    assert np.isnan(got[2])
    wrap = angle_distance_2d(np.radians([[359.0, 1.0, 180.0]]), np.radians([[1.0, 359.0, -180.0]]))
    np.testing.assert_allclose(wrap, [(2.0 + 2.0 + 0.0) / 3], atol=1e-9)


# ----------------------------------------------------------------------------- jax


def _jax_cases():
    pred, target, valid = _landmarks(13)
    ra, rb = _rotations(14)
    rng = np.random.default_rng(15)
    pa, ta = rng.uniform(-4, 4, size=(B, T)), rng.uniform(-4, 4, size=(B, T))
    lvd_face = functools.partial(landmark_velocity_error, points="face")
    lvd_raw = functools.partial(landmark_velocity_error, centre=False)
    euler_xyz = functools.partial(rotation_distance_euler, order="XYZ")
    return [
        (m_lmd, pred, target, valid),
        (f_lmd, pred, target, valid),
        (lmd_atvgnet, pred, target, valid),
        (landmark_velocity_error, pred, target, valid),
        (lvd_face, pred, target, valid),
        (lvd_raw, pred, target, valid),
        (rotation_distance, ra, rb, valid),
        (rotation_distance_euler, ra, rb, valid),
        (euler_xyz, ra, rb, valid),
        (angle_distance_2d, pa, ta, valid),
    ]


def test_jit_on_jax_matches_numpy_with_batch_dims():
    for fn, p, q, v in _jax_cases():
        want = fn(p, q, valid=v)
        jitted = jax.jit(lambda p, q, v, fn=fn: fn(p, q, valid=v))
        got = jitted(jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32), jnp.asarray(v))
        assert got.shape == (B,) and got.dtype == jnp.float32, fn
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-3, err_msg=str(fn))
        # valid=None and a numpy mask inside jit take the same path.
        clean_p = np.nan_to_num(p)
        got_all = jax.jit(lambda p, q, fn=fn: fn(p, q))(jnp.asarray(clean_p, jnp.float32), jnp.asarray(q, jnp.float32))
        np.testing.assert_allclose(np.asarray(got_all), fn(clean_p, q), rtol=2e-4, atol=2e-3, err_msg=str(fn))
    ppe = jax.jit(per_point_error)(jnp.zeros((B, T, 68, 2), jnp.bfloat16), jnp.ones((B, T, 68, 2), jnp.bfloat16))
    assert ppe.dtype == jnp.float32 and ppe.shape == (B, T, 68)
    np.testing.assert_allclose(np.asarray(ppe), math.sqrt(2), rtol=1e-6)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    x = np.zeros((T, 68, 2))
    with pytest.raises(ValueError, match=r"m_lmd\(pred\).*\(\.\.\., T, 68, 2\)"):
        m_lmd(np.zeros((T, 67, 2)), np.zeros((T, 67, 2)))
    with pytest.raises(ValueError, match=r"f_lmd\(target\).*\(\.\.\., T, 68, 2\)"):
        f_lmd(x, np.zeros((T, 136)))
    with pytest.raises(ValueError, match=r"f_lmd\(pred\)"):
        f_lmd(np.zeros((68, 2))[0], x)
    with pytest.raises(ValueError, match=r"m_lmd: pred \(6, 68, 2\) and target \(5, 68, 2\)"):
        m_lmd(x, x[:5])
    with pytest.raises(ValueError, match=r"landmark_velocity_error\(pred\): expected at least 2 frame"):
        landmark_velocity_error(x[:1], x[:1])
    with pytest.raises(ValueError, match=r"landmark_velocity_error\(points\)"):
        landmark_velocity_error(x, x, points="lips")
    with pytest.raises(ValueError, match=r"m_lmd\(valid\): expected shape \(6,\)"):
        m_lmd(x, x, valid=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"m_lmd\(valid\).*dtype"):
        m_lmd(x, x, valid=np.ones(T))
    with pytest.raises(ValueError, match=r"rotation_distance\(pred\).*\(\.\.\., T, 3, 3\)"):
        rotation_distance(np.zeros((T, 3, 4)), np.zeros((T, 3, 4)))
    with pytest.raises(ValueError, match=r"rotation_distance_euler\(target\)"):
        rotation_distance_euler(np.zeros((T, 3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"angle_distance_2d\(pred\).*\(\.\.\., T\)"):
        angle_distance_2d(np.float64(1.0), np.float64(1.0))
    with pytest.raises(ValueError, match=r"per_point_error\(pred\)"):
        per_point_error(np.zeros((T, 68, 3)), np.zeros((T, 68, 3)))
    # Shape errors are raised at trace time under jit too.
    with pytest.raises(ValueError, match=r"m_lmd\(pred\)"):
        jax.jit(m_lmd)(jnp.zeros((T, 20, 2)), jnp.zeros((T, 20, 2)))
