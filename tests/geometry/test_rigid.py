import warnings

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from macl_jax import geometry
from macl_jax.geometry import rigid

IDX = list(rigid.STABLE_27_INDICES)


def _reference_fit(frame, canonical):
    """Frame-by-frame transcription of the reference rigid_transform_3D (one SVD per frame)."""
    a, b = frame[IDX], canonical[IDX]
    ca, cb = a.mean(0), b.mean(0)
    h = (a - ca).T @ (b - cb)
    u, _, vt = np.linalg.svd(h)
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:
        vt[2, :] *= -1
        r = vt.T @ u.T
    return r, cb - r @ ca


def _rotations(n, seed):
    """Random rotations plus the hard cases: identity, tiny angles, exactly and nearly pi."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0, np.pi, n)
    angle[:12] = [0.0, 1e-14, 1e-10, 1e-7, 1e-4, 1e-3, 2e-3, np.pi, np.pi - 1e-12, np.pi - 1e-8, np.pi - 1e-5, np.pi - 1e-3]
    return Rotation.from_rotvec(axis * angle[:, None])


def test_rigid_fit_recovers_a_known_pose_exactly():
    rng = np.random.default_rng(0)
    canonical = rng.normal(scale=50, size=(68, 3))
    rot = Rotation.random(6, random_state=1).as_matrix()
    shift = rng.normal(scale=20, size=(6, 3))
    # Posed frames are the inverse transform of the canonical face: L = R^T (C - t).
    frames = np.einsum("nji,kj->nki", rot, canonical) - np.einsum("nji,nj->ni", rot, shift)[:, None, :]
    r, t = rigid.rigid_fit_3d(frames, canonical)
    np.testing.assert_allclose(r, rot, atol=1e-12)
    np.testing.assert_allclose(t, shift, atol=1e-10)
    np.testing.assert_allclose(rigid.apply_rigid(frames, r, t), np.broadcast_to(canonical, frames.shape), atol=1e-10)
    np.testing.assert_allclose(rigid.unapply_rigid(rigid.apply_rigid(frames, r, t), r, t), frames, atol=1e-10)


def test_rigid_fit_matches_the_per_frame_reference_and_is_proper():
    rng = np.random.default_rng(2)
    canonical = rng.normal(size=(68, 3))
    frames = rng.normal(size=(2, 5, 68, 3))
    frames[1] = frames[1] * np.array([-1.0, 1.0, 1.0])  # mirrored inputs
    r, t = rigid.rigid_fit_3d(frames, canonical)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    for b in range(2):
        for f in range(5):
            rr, tt = _reference_fit(frames[b, f], canonical)
            np.testing.assert_allclose(r[b, f], rr, atol=1e-12)
            np.testing.assert_allclose(t[b, f], tt, atol=1e-12)
    # kabsch on the subset is the same fit.
    r2, t2 = rigid.kabsch(frames[..., IDX, :], canonical[IDX])
    np.testing.assert_allclose(r2, r, atol=1e-13)
    np.testing.assert_allclose(t2, t, atol=1e-13)


def test_invert_rigid_composes_to_identity():
    rng = np.random.default_rng(3)
    r = Rotation.random(4, random_state=3).as_matrix()
    t = rng.normal(size=(4, 3))
    ri, ti = rigid.invert_rigid(r, t)
    p = rng.normal(size=(4, 10, 3))
    np.testing.assert_allclose(rigid.apply_rigid(rigid.apply_rigid(p, r, t), ri, ti), p, atol=1e-12)
    np.testing.assert_allclose(rigid.apply_rigid(p, ri, ti), rigid.unapply_rigid(p, r, t), atol=1e-12)


def test_rotvec_round_trips_match_scipy_including_near_zero_and_pi():
    rots = _rotations(400, 4)
    m = rots.as_matrix()
    rv = rigid.rotation_to_rotvec(m)
    np.testing.assert_allclose(np.linalg.norm(rv, axis=-1), rots.magnitude(), atol=1e-12)
    ref = rots.as_rotvec()
    # At exactly pi, +v and -v are the same rotation; elsewhere the vector is unique.
    same = np.minimum(np.abs(rv - ref).max(-1), np.abs(rv + ref).max(-1))
    assert same.max() < 1e-10
    away_from_pi = rots.magnitude() < np.pi - 1e-6
    np.testing.assert_allclose(rv[away_from_pi], ref[away_from_pi], atol=1e-10)
    np.testing.assert_allclose(rigid.rotvec_to_rotation(ref), m, atol=1e-13)
    np.testing.assert_allclose(rigid.rotvec_to_rotation(rv), m, atol=1e-12)
    # Tiny angles keep full relative precision (no 1 - cos cancellation).
    tiny = np.array([[1e-9, -2e-9, 3e-9]])
    np.testing.assert_allclose(rigid.rotation_to_rotvec(rigid.rotvec_to_rotation(tiny)), tiny, rtol=1e-6)


def test_euler_matches_scipy_for_all_sequences_and_gimbal_lock():
    m = _rotations(300, 5).as_matrix()
    for order in ("zyx", "ZYX", "xyz", "XYZ", "yxz", "zxz", "ZXZ", "xyx", "YZY"):
        with warnings.catch_warnings():  # the identity is a gimbal lock of the symmetric sequences
            warnings.simplefilter("ignore")
            want = Rotation.from_matrix(m).as_euler(order, degrees=True)
        np.testing.assert_allclose(rigid.rotation_to_euler(m, order), want, atol=1e-9, err_msg=order)
    rng = np.random.default_rng(6)
    angles = rng.uniform(-170, 170, size=(20, 3))
    angles[:10, 1], angles[10:, 1] = 90.0, -90.0
    locked = Rotation.from_euler("zyx", angles, degrees=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = locked.as_euler("zyx", degrees=True)
    got = rigid.rotation_to_euler(locked.as_matrix(), "zyx")
    np.testing.assert_allclose(np.angle(np.exp(1j * np.deg2rad(got - want))), 0.0, atol=1e-9)
    np.testing.assert_allclose(rigid.rotation_to_euler(m[:5], "zyx", degrees=False), np.deg2rad(rigid.rotation_to_euler(m[:5], "zyx")), atol=1e-12)
    with pytest.raises(ValueError, match="order"):
        rigid.rotation_to_euler(m, "zyX")


def test_geodesic_angle_matches_scipy_and_the_arccos_formula():
    a = Rotation.random(len(_rotations(200, 7)), random_state=8)
    rel = _rotations(200, 7)
    b = a * rel
    got = rigid.geodesic_angle(a.as_matrix(), b.as_matrix())
    np.testing.assert_allclose(got, np.rad2deg(rel.magnitude()), atol=1e-9)
    np.testing.assert_allclose(got, np.rad2deg((a.inv() * b).magnitude()), atol=1e-9)
    tr = np.einsum("nij,nij->n", a.as_matrix(), b.as_matrix())
    arccos = np.rad2deg(np.arccos(np.clip((tr - 1) / 2, -1, 1)))
    moderate = (rel.magnitude() > 1e-2) & (rel.magnitude() < np.pi - 1e-2)
    np.testing.assert_allclose(got[moderate], arccos[moderate], atol=1e-9)
    # Symmetric, and resolves an angle that arccos rounds to zero.
    np.testing.assert_allclose(rigid.geodesic_angle(b.as_matrix(), a.as_matrix()), got, atol=1e-9)
    small = Rotation.from_rotvec([0, 0, 1e-9]).as_matrix()
    assert rigid.geodesic_angle(np.eye(3), small, degrees=False) == pytest.approx(1e-9, rel=1e-6)


def test_float32_round_trip_and_jax_jit():
    import jax
    import jax.numpy as jnp

    rots = _rotations(64, 9)
    m = rots.as_matrix()
    m32 = m.astype(np.float32)
    assert rigid.rotation_to_rotvec(m32).dtype == np.float32

    def run(fn, *args):
        got = np.asarray(jax.jit(fn)(*(jnp.asarray(a) for a in args)))
        assert got.dtype == np.float32
        return got

    rv = run(rigid.rotation_to_rotvec, m32)
    ref = rots.as_rotvec()
    rv = np.where(np.abs(rv - ref).max(-1, keepdims=True) > 1e-2, -rv, rv)  # +-v at exactly pi
    np.testing.assert_allclose(rv, ref, atol=1e-5)
    np.testing.assert_allclose(run(rigid.rotvec_to_rotation, ref.astype(np.float32)), m, atol=1e-6)
    euler = run(lambda r: rigid.rotation_to_euler(r, "zyx"), m32)
    diff = np.angle(np.exp(1j * np.deg2rad(euler - Rotation.from_matrix(m).as_euler("zyx", degrees=True))))
    assert np.rad2deg(np.abs(diff)).max() < 1e-3
    np.testing.assert_allclose(run(rigid.geodesic_angle, m32, np.eye(3, dtype=np.float32)), np.rad2deg(rots.magnitude()), atol=1e-3)
    canonical = np.random.default_rng(10).normal(size=(68, 3)).astype(np.float32)
    frames = np.random.default_rng(11).normal(size=(3, 68, 3)).astype(np.float32)
    r, t = jax.jit(rigid.rigid_fit_3d)(jnp.asarray(frames), jnp.asarray(canonical))
    rr, tt = rigid.rigid_fit_3d(frames.astype(np.float64), canonical.astype(np.float64))
    np.testing.assert_allclose(np.asarray(r), rr, atol=1e-4)
    np.testing.assert_allclose(np.asarray(t), tt, atol=1e-4)


def test_the_package_exports_every_public_name_of_rigid():
    public = {
        n for n, v in vars(rigid).items()
        if not n.startswith("_") and (n.isupper() or getattr(v, "__module__", None) == rigid.__name__)
    }
    assert {"STABLE_27_INDICES", "kabsch", "rigid_fit_3d"} <= public
    assert sorted(n for n in public if n not in geometry.__all__ or getattr(geometry, n) is not getattr(rigid, n)) == []
