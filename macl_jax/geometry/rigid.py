"""Rigid (rotation + translation, no scale) fits and rotation parameterisations.

Numpy in, numpy out (float64 inside, input float dtype back). Every function here also accepts
jax arrays and is then jit-traceable (computed in the input dtype).

Conventions: points are row vectors, so a transform (R, t) acts as `p @ R.T + t`, i.e.
p' = R p + t per point. Quaternions, rotation vectors and Euler angles follow
`scipy.spatial.transform.Rotation` (scalar-last quaternions; extrinsic lower-case / intrinsic
upper-case Euler sequences; rotvec in radians).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from macl_jax.geometry._backend import check_points, namespace, swap_last, to_compute

# Rhythmic-Head-Motion "motion disentangler" subset (0-based iBUG): jaw away from the chin,
# the whole nose, the four eye corners and the four brow ends. Order as in the reference code.
STABLE_27_INDICES: tuple[int, ...] = (
    1, 2, 3, 4, 5, 11, 12, 13, 14, 15,
    27, 28, 29, 30, 31, 32, 33, 34, 35,
    39, 42, 36, 45,
    17, 21, 22, 26,
)  # fmt: skip


def _det(m: Any, xp: Any) -> Any:
    d = m.shape[-1]
    if d == 2:
        return m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    if d == 3:
        return (
            m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
            - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
            + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0])
        )
    return xp.linalg.det(m)


def _kabsch(source: Any, target: Any, xp: Any) -> tuple[Any, Any]:
    """Kabsch on compute-dtype arrays: source (..., K, D), target broadcastable to it."""
    c_src = xp.mean(source, axis=-2)
    c_dst = xp.mean(target, axis=-2)
    a = source - c_src[..., None, :]
    b = target - c_dst[..., None, :]
    h = swap_last(a, xp) @ b
    u, _, vt = xp.linalg.svd(h)
    v = swap_last(vt, xp)
    ut = swap_last(u, xp)
    # Reflection fix as in the reference code: negating the last row of V^T (= last column of
    # V) when det(V U^T) < 0 gives the best *proper* rotation; a mirrored face never comes out
    # as a reflection.
    sign = xp.where(_det(v @ ut, xp) < 0, -1.0, 1.0).astype(h.dtype)
    ones = xp.ones(sign.shape + (h.shape[-1] - 1,), dtype=h.dtype)
    flip = xp.concatenate([ones, sign[..., None]], axis=-1)
    r = (v * flip[..., None, :]) @ ut
    t = c_dst - (r @ c_src[..., None])[..., 0]
    return r, t


def kabsch(source: Any, target: Any) -> tuple[Any, Any]:
    """Least-squares proper rotation R and translation t (no scale) with target ~ R source + t.

    source (..., K, D) and target (K, D) or (..., K, D) are corresponding point sets. Centre
    both, H = A^T B, SVD H = U S V^T, R = V U^T (last row of V^T negated if det < 0),
    t = c_target - R c_source. Returns R (..., D, D), t (..., D).
    """
    xp = namespace(source, target)
    src, out = to_compute(source, xp)
    dst = xp.asarray(target, dtype=src.dtype)
    if src.ndim < 2 or dst.ndim < 2 or src.shape[-2:] != dst.shape[-2:]:
        raise ValueError(
            f"kabsch: source {tuple(src.shape)} and target {tuple(dst.shape)} must both end in the same (K, D)."
        )
    r, t = _kabsch(src, dst, xp)
    return r.astype(out), t.astype(out)


def rigid_fit_3d(points: Any, canonical: Any, indices: Sequence[int] = STABLE_27_INDICES) -> tuple[Any, Any]:
    """Per-frame rigid fit frame -> canonical on the stable subset: returns R (..., 3, 3), t (..., 3).

    points (..., 68, 3) (any leading axes: a clip (T, 68, 3), a batch (B, T, 68, 3)), canonical
    (68, 3). The frontalised face is `apply_rigid(points, R, t)` (L_front = R L + t); the posed
    face is recovered with `unapply_rigid(L_front, R, t)`. det(R) = +1 always.
    """
    xp = namespace(points, canonical)
    x, out = to_compute(points, xp)
    check_points(x, "rigid_fit_3d(points)", dims=(3,))
    can = xp.asarray(canonical, dtype=x.dtype)
    check_points(can, "rigid_fit_3d(canonical)", num_points=x.shape[-2], dims=(3,))
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 1 or idx.size < 3 or idx.min() < 0 or idx.max() >= x.shape[-2]:
        raise ValueError(
            f"rigid_fit_3d(indices): need at least 3 point indices in [0, {x.shape[-2]}), got {tuple(idx.tolist())}."
        )
    r, t = _kabsch(x[..., idx, :], can[..., idx, :], xp)
    return r.astype(out), t.astype(out)


def apply_rigid(points: Any, rotation: Any, translation: Any) -> Any:
    """p' = R p + t for every point: points (..., N, D), R (..., D, D), t (..., D)."""
    xp = namespace(points, rotation, translation)
    x, out = to_compute(points, xp)
    r = xp.asarray(rotation, dtype=x.dtype)
    t = xp.asarray(translation, dtype=x.dtype)
    return (x @ swap_last(r, xp) + t[..., None, :]).astype(out)


def unapply_rigid(points: Any, rotation: Any, translation: Any) -> Any:
    """Inverse of `apply_rigid`: p = R^T (p' - t) (the reference code's "reverse_rt")."""
    xp = namespace(points, rotation, translation)
    x, out = to_compute(points, xp)
    r = xp.asarray(rotation, dtype=x.dtype)
    t = xp.asarray(translation, dtype=x.dtype)
    return ((x - t[..., None, :]) @ r).astype(out)


def invert_rigid(rotation: Any, translation: Any) -> tuple[Any, Any]:
    """(R, t) -> (R^T, -R^T t), the transform that undoes (R, t)."""
    xp = namespace(rotation, translation)
    r, out = to_compute(rotation, xp)
    t = xp.asarray(translation, dtype=r.dtype)
    rt = swap_last(r, xp)
    return rt.astype(out), (-(rt @ t[..., None])[..., 0]).astype(out)


def _check_matrix(r: Any, name: str) -> None:
    if r.ndim < 2 or tuple(r.shape[-2:]) != (3, 3):
        raise ValueError(f"{name}: expected rotation matrices of shape (..., 3, 3), got {tuple(r.shape)}.")


def _quaternion(r: Any, xp: Any) -> Any:
    """Unit quaternion (x, y, z, w) of a rotation matrix, scipy's branch choice (Shepperd)."""

    def m(i: int, j: int) -> Any:
        return r[..., i, j]

    tr = m(0, 0) + m(1, 1) + m(2, 2)
    # Build from the largest of (R00, R11, R22, trace): the candidate's pivot entry is then
    # >= 1, so the normalisation never divides by a small number (accurate near 180 degrees).
    choice = xp.argmax(xp.stack([m(0, 0), m(1, 1), m(2, 2), tr], axis=-1), axis=-1)

    candidates = xp.stack(
        [
            xp.stack([1 - tr + 2 * m(0, 0), m(1, 0) + m(0, 1), m(2, 0) + m(0, 2), m(2, 1) - m(1, 2)], axis=-1),
            xp.stack([m(1, 0) + m(0, 1), 1 - tr + 2 * m(1, 1), m(2, 1) + m(1, 2), m(0, 2) - m(2, 0)], axis=-1),
            xp.stack([m(2, 0) + m(0, 2), m(2, 1) + m(1, 2), 1 - tr + 2 * m(2, 2), m(1, 0) - m(0, 1)], axis=-1),
            xp.stack([m(2, 1) - m(1, 2), m(0, 2) - m(2, 0), m(1, 0) - m(0, 1), 1 + tr], axis=-1),
        ],
        axis=-2,
    )
    q = xp.take_along_axis(candidates, choice[..., None, None], axis=-2)[..., 0, :]
    return q / xp.linalg.norm(q, axis=-1, keepdims=True)


def _canonical(q: Any, xp: Any) -> Any:
    """q or -q, whichever has w > 0 (ties broken on x, then y, then z, as scipy does)."""
    w0 = q[..., 3] == 0
    flip = q[..., 3] < 0
    flip = flip | (w0 & (q[..., 0] < 0))
    wx0 = w0 & (q[..., 0] == 0)
    flip = flip | (wx0 & (q[..., 1] < 0))
    flip = flip | (wx0 & (q[..., 1] == 0) & (q[..., 2] < 0))
    return xp.where(flip[..., None], -q, q)


def rotation_to_rotvec(rotation: Any) -> Any:
    """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3) in radians (angle in [0, pi]).

    Goes through the canonical quaternion, so it is accurate near 0 and near pi (where the
    trace formula is ill-conditioned); equal to scipy's `Rotation.from_matrix(R).as_rotvec()`.
    """
    xp = namespace(rotation)
    r, out = to_compute(rotation, xp)
    _check_matrix(r, "rotation_to_rotvec(rotation)")
    q = _canonical(_quaternion(r, xp), xp)
    angle = 2 * xp.arctan2(xp.linalg.norm(q[..., :3], axis=-1), q[..., 3])
    # angle / sin(angle / 2) written with sinc: no 0/0 at the identity, no series switch.
    scale = 2.0 / xp.sinc(angle / (2 * np.pi))
    return (scale[..., None] * q[..., :3]).astype(out)


def rotvec_to_rotation(rotvec: Any) -> Any:
    """Rotation vectors (..., 3) in radians -> rotation matrices (..., 3, 3) (Rodrigues).

    R = I + a K + b K^2 with K = [v]x, a = sin(th)/th, b = (1 - cos(th))/th^2; both factors are
    evaluated through sinc (b = sinc(th/2)^2 / 2), which has no cancellation near th = 0.
    """
    xp = namespace(rotvec)
    v, out = to_compute(rotvec, xp)
    if v.ndim < 1 or v.shape[-1] != 3:
        raise ValueError(f"rotvec_to_rotation(rotvec): expected shape (..., 3), got {tuple(v.shape)}.")
    theta = xp.linalg.norm(v, axis=-1)
    a = xp.sinc(theta / np.pi)[..., None, None]
    b = 0.5 * xp.sinc(theta / (2 * np.pi))[..., None, None] ** 2
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = xp.zeros_like(x)
    k = xp.stack([xp.stack([zero, -z, y], -1), xp.stack([z, zero, -x], -1), xp.stack([-y, x, zero], -1)], -2)
    eye = xp.eye(3, dtype=v.dtype)
    return (eye + a * k + b * (k @ k)).astype(out)


_AXIS = {"x": 0, "y": 1, "z": 2}


def rotation_to_euler(rotation: Any, order: str = "zyx", degrees: bool = True) -> Any:
    """Euler angles (..., 3) of rotation matrices, identical to scipy's `as_euler(order, degrees)`.

    Lower-case `order` is extrinsic (fixed axes), upper-case intrinsic, exactly as in scipy;
    angles come in the order of the letters. The peers' head-pose scripts use
    `as_euler('zyx', degrees=True)` and read component 1 as yaw. At gimbal lock (middle angle
    0/pi for proper Euler, +-90 degrees for Tait-Bryan) the third angle is set to 0, as scipy does
    (without its warning). Quaternion-based (Bernardes & Viollet 2022), so no asin clipping issues.
    """
    if len(order) != 3 or not (order.islower() or order.isupper()) or set(order.lower()) - set("xyz"):
        raise ValueError(f"rotation_to_euler(order): expected 3 letters from 'xyz' (extrinsic) or 'XYZ' (intrinsic), got {order!r}.")
    if order[0] == order[1] or order[1] == order[2]:
        raise ValueError(f"rotation_to_euler(order): consecutive axes must differ, got {order!r}.")
    xp = namespace(rotation)
    r, out = to_compute(rotation, xp)
    _check_matrix(r, "rotation_to_euler(rotation)")
    q = _quaternion(r, xp)

    extrinsic = order.islower()
    seq = order.lower() if extrinsic else order.lower()[::-1]
    i, j, k = (_AXIS[c] for c in seq)
    symmetric = i == k
    if symmetric:
        k = 3 - i - j
    sign = float((i - j) * (j - k) * (k - i) // 2)
    if symmetric:
        a, b, c, d = q[..., 3], q[..., i], q[..., j], q[..., k] * sign
    else:
        a = q[..., 3] - q[..., j]
        b = q[..., i] + q[..., k] * sign
        c = q[..., j] + q[..., 3]
        d = q[..., k] * sign - q[..., i]

    middle = 2 * xp.arctan2(xp.hypot(c, d), xp.hypot(a, b))
    half_sum = xp.arctan2(b, a)
    half_diff = xp.arctan2(d, c)
    eps = 1e-7
    near_zero = xp.abs(middle) <= eps
    near_pi = xp.abs(middle - np.pi) <= eps
    regular = ~(near_zero | near_pi)
    # At a singularity only the sum or difference of the outer angles is defined: that goes in
    # the slot scipy uses, and the other outer angle is zero.
    singular = xp.where(near_zero, 2 * half_sum, 2 * half_diff * (-1.0 if extrinsic else 1.0))
    first = xp.where(regular, half_sum - half_diff, singular if extrinsic else 0.0)
    third = xp.where(regular, half_sum + half_diff, 0.0 if extrinsic else singular)
    if not symmetric:
        third = third * sign
        middle = middle - np.pi / 2
    angles = xp.stack([first, middle, third] if extrinsic else [third, middle, first], axis=-1)
    angles = (angles + np.pi) % (2 * np.pi) - np.pi
    if degrees:
        angles = angles * (180.0 / np.pi)
    return angles.astype(out)


def geodesic_angle(rotation_a: Any, rotation_b: Any, degrees: bool = True) -> Any:
    """Angle of the relative rotation Ra^T Rb (the rotation-distance metric), in [0, 180] degrees.

    For rotation matrices this equals arccos(clip((tr(Ra^T Rb) - 1) / 2, -1, 1)); it is evaluated
    as atan2(|vee(M - M^T)|, tr(M) - 1) with M = Ra^T Rb because arccos near 1 keeps only about
    half of the float digits (a 1e-8 rad difference would read as 0). Meant as a metric: its
    gradient is undefined where the two rotations coincide.
    """
    xp = namespace(rotation_a, rotation_b)
    ra, out = to_compute(rotation_a, xp)
    rb = xp.asarray(rotation_b, dtype=ra.dtype)
    _check_matrix(ra, "geodesic_angle(rotation_a)")
    _check_matrix(rb, "geodesic_angle(rotation_b)")
    m = swap_last(ra, xp) @ rb
    cos2 = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2] - 1
    w = xp.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], axis=-1)
    angle = xp.arctan2(xp.linalg.norm(w, axis=-1), cos2)
    if degrees:
        angle = angle * (180.0 / np.pi)
    return angle.astype(out)
