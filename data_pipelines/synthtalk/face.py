"""SynthTalk face geometry: a 3-D iBUG-68 face, its identity variation, articulation and projection.

Numpy only (runs inside grain workers).

Frames and units
----------------
Face-local frame: x to image right, y down, z toward the camera, in units where the outer eye
corners of the mean face are 1 apart (|p45 - p36| = 1, about 9 cm on a real face). The origin is
the head's rotation pivot: on the midline, 0.35 below the eye line and 0.9 behind the outer eye
corners (inside the skull, roughly level with the ear canals), so rotating about it looks like a
head turning on the neck. Landmarks are iBUG-68, 0-based; the subject's right side (points 0, 17,
36, 48, ...) is at image left.

Pose: ``world = R @ local + T``. ``euler_to_rotation(yaw, pitch, roll)`` returns
``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (scipy ``Rotation.from_euler("YXZ", [yaw, pitch, roll])``):

* yaw: about the vertical y axis; positive yaw turns the nose toward image right;
* pitch: about the horizontal x axis; positive pitch lifts the chin (the nose moves up);
* roll: about the camera (z) axis; positive roll tilts the head clockwise in the image
  (the subject's left eye, at image right, moves down).

Yaw is applied last, about the world vertical, as a neck turns the nodded head.

Camera (`Camera`, `project`): a pinhole at ``(0, look_y, distance)`` looking down -z with the image
y axis pointing down. Pixel coordinates put the centre of pixel column j at x = j (row i at
y = i), the convention of dlib and scikit-image, so the image spans [-0.5, size - 0.5].
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "EXPRESSION_NAMES",
    "IDENTITY_NAMES",
    "MIRROR",
    "NUM_LANDMARKS",
    "PIVOT_EYE_FRAME",
    "VISEME_NAMES",
    "Camera",
    "apply_pose",
    "articulate",
    "check_image_size",
    "euler_to_rotation",
    "identity_shape",
    "mean_shape",
    "project",
]

IDENTITY_NAMES = ("face_width", "jaw", "eye_distance", "nose", "lip_thickness")
VISEME_NAMES = ("jaw_open", "lip_width", "rounding", "closure")
EXPRESSION_NAMES = ("brow_raise", "brow_furrow", "smile", "eye_open", "blink")
NUM_LANDMARKS = 68

# iBUG index of each point's mirror image (subject's right <-> left).
MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # eye 36-41 <-> 42-47
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)

# The image-right half (x >= 0) and midline of the mean face, in an "eye frame": origin midway
# between the outer eye corners, same axes and units as the face-local frame. The nose and eye
# points reproduce the 9-point anchor (MakeItTalk, docs/decisions.md#tshape-anchor, symmetrised); the rest follows
# average iBUG proportions (chin 1.3 below the eye line, jaw 1.68 wide, mouth 0.65 wide) with
# depths of an average adult head.
_HALF = {
    8: (0.0, 1.30, 0.12),
    9: (0.19, 1.27, 0.09),
    10: (0.37, 1.17, 0.0),
    11: (0.53, 1.03, -0.12),
    12: (0.66, 0.86, -0.26),
    13: (0.75, 0.67, -0.38),
    14: (0.80, 0.46, -0.48),
    15: (0.83, 0.24, -0.55),
    16: (0.84, 0.02, -0.60),
    22: (0.13, -0.18, 0.15),
    23: (0.27, -0.245, 0.14),
    24: (0.42, -0.265, 0.10),
    25: (0.56, -0.24, 0.03),
    26: (0.665, -0.165, -0.09),
    27: (0.0, 0.012, 0.183),
    28: (0.0, 0.147, 0.258),
    29: (0.0, 0.280, 0.349),
    30: (0.0, 0.390, 0.358),
    33: (0.0, 0.525, 0.194),
    34: (0.085, 0.505, 0.165),
    35: (0.16, 0.475, 0.105),
    42: (0.232, 0.012, 0.057),
    43: (0.31, -0.045, 0.075),
    44: (0.415, -0.05, 0.06),
    45: (0.5, 0.0, 0.0),
    46: (0.42, 0.04, 0.045),
    47: (0.315, 0.045, 0.06),
    51: (0.0, 0.70, 0.235),
    52: (0.085, 0.69, 0.225),
    53: (0.21, 0.715, 0.18),
    54: (0.325, 0.765, 0.10),
    55: (0.205, 0.855, 0.17),
    56: (0.09, 0.89, 0.205),
    57: (0.0, 0.90, 0.215),
    62: (0.0, 0.777, 0.215),
    63: (0.09, 0.775, 0.205),
    64: (0.28, 0.768, 0.11),
    65: (0.09, 0.781, 0.20),
    66: (0.0, 0.783, 0.207),
}
# The rotation pivot in the eye frame.
PIVOT_EYE_FRAME = np.array([0.0, 0.35, -0.9])
# Mandible hinge (temporomandibular joint, just in front of the ear canal), eye frame.
_JAW_HINGE_EYE_FRAME = np.array([0.0, 0.30, -0.70])
_JAW_OPEN_MAX_RAD = np.deg2rad(17.0)

# Index groups.
JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE = np.arange(27, 36)
EYES = np.arange(36, 48)
OUTER_LIP = np.arange(48, 60)
INNER_LIP = np.arange(60, 68)
UPPER_LID = np.array([37, 38, 43, 44])
LOWER_LID = np.array([41, 40, 47, 46])  # paired with UPPER_LID column by column
MOUTH_CORNERS = np.array([48, 54, 60, 64])
UPPER_OUTER = np.array([49, 50, 51, 52, 53])
LOWER_OUTER = np.array([59, 58, 57, 56, 55])  # paired with UPPER_OUTER column by column
UPPER_INNER = np.array([61, 62, 63])
LOWER_INNER = np.array([67, 66, 65])  # paired with UPPER_INNER


def _build_mean() -> np.ndarray:
    pts = np.full((NUM_LANDMARKS, 3), np.nan)
    for i, p in _HALF.items():
        pts[i] = p
        pts[MIRROR[i]] = (-p[0], p[1], p[2])
    assert not np.isnan(pts).any()
    return pts - PIVOT_EYE_FRAME


_MEAN = _build_mean()
_MEAN.setflags(write=False)
_JAW_HINGE = _JAW_HINGE_EYE_FRAME - PIVOT_EYE_FRAME


def mean_shape() -> np.ndarray:
    """The mean neutral face, (68, 3) float64 in the face-local frame."""
    return _MEAN.copy()


def _side(points: np.ndarray) -> np.ndarray:
    """-1 at image left, +1 at image right, 0 on the midline (from the mean face)."""
    return np.sign(np.round(_MEAN[: points.shape[-2], 0], 6))


def identity_shape(coeffs: np.ndarray) -> np.ndarray:
    """The neutral face of a speaker from its identity coefficients (5,) ~ N(0, 1): (68, 3).

    Per unit coefficient: face_width scales the jaw contour's width by 5 %; jaw lengthens the
    chin by up to 0.04 and squares the jaw angle; eye_distance moves each eye 0.016 outward (brows
    follow by 70 %); nose lengthens the nose by 4.5 % and widens the nostrils by 7 %;
    lip_thickness thickens the upper lip by 0.012 and the lower by 0.015. Coefficients within
    [-3, 3] keep a plausible face.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    if c.shape != (len(IDENTITY_NAMES),):
        raise ValueError(
            f"identity coeffs must have shape ({len(IDENTITY_NAMES)},) ordered as {IDENTITY_NAMES}, got {c.shape}"
        )
    if not np.all(np.isfinite(c)):
        raise ValueError(f"identity coeffs must be finite, got {c}")
    width, jaw, eyes, nose, lips = c
    p = _MEAN.copy()
    eye_y = -PIVOT_EYE_FRAME[1]  # the eye line in local coordinates
    # face_width: x scale of the jaw contour.
    p[JAW, 0] *= 1.0 + 0.05 * width
    # jaw: lower jaw points (below the mouth) stretch downward, and the jaw angle squares
    # (points 4-6 / 10-12 move out) or narrows toward a pointed chin.
    below = np.clip((p[JAW, 1] - (eye_y + 0.6)) / 0.7, 0.0, None)
    p[JAW, 1] += 0.04 * jaw * below
    square = np.exp(-0.5 * ((np.abs(JAW - 8) - 3.0) / 1.2) ** 2)
    p[JAW, 0] += 0.025 * jaw * square * np.sign(p[JAW, 0])
    # eye_distance: each eye (and 70 % of its brow) moves sideways.
    p[EYES, 0] += 0.016 * eyes * np.sign(p[EYES, 0])
    p[BROWS, 0] += 0.7 * 0.016 * eyes * np.sign(p[BROWS, 0])
    # nose: length and protrusion about the nasion, and nostril width.
    nasion = p[27].copy()
    p[28:36, 1:] = nasion[1:] + (p[28:36, 1:] - nasion[1:]) * (1.0 + 0.045 * nose)
    p[31:36, 0] *= 1.0 + 0.07 * nose
    # lip_thickness: the outer lip lines move away from the inner lip line.
    gain = np.array([0.5, 0.9, 1.0, 0.9, 0.5])
    p[UPPER_OUTER, 1] -= 0.012 * lips * gain
    p[LOWER_OUTER, 1] += 0.015 * lips * gain
    p[UPPER_OUTER, 2] += 0.006 * lips * gain
    p[LOWER_OUTER, 2] += 0.008 * lips * gain
    return p


def _as_tracks(values: np.ndarray, width: int, name: str, names: tuple[str, ...]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != width:
        raise ValueError(f"{name} must have shape (T, {width}) ordered as {names}, got {v.shape}")
    return v


def articulate(neutral: np.ndarray, visemes: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Applies per-frame visemes (T, 4) and expression (T, 5) to a neutral face (68, 3): (T, 68, 3).

    Values are clipped to their documented ranges (VISEME_NAMES / EXPRESSION_NAMES). The mouth
    shape (width, rounding, smile) is set first, the mandible then rotates about a hinge in front
    of the ears (jaw_open = 1 is 17 degrees), and closure finally brings the inner lips together
    (the outer lips follow), overriding the jaw for the lips. Eyelids: eye_open, then blink.
    """
    base = np.asarray(neutral, dtype=np.float64)
    if base.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"neutral must have shape (68, 3), got {base.shape}")
    vis = _as_tracks(visemes, len(VISEME_NAMES), "visemes", VISEME_NAMES)
    expr = _as_tracks(expression, len(EXPRESSION_NAMES), "expression", EXPRESSION_NAMES)
    if len(vis) != len(expr):
        raise ValueError(
            f"visemes and expression must have the same number of frames, got {len(vis)} and {len(expr)}"
        )
    t = len(vis)
    jaw_open = np.clip(vis[:, 0], 0.0, 1.0)[:, None]
    lip_width = np.clip(vis[:, 1], -1.0, 1.0)[:, None]
    rounding = np.clip(vis[:, 2], 0.0, 1.0)[:, None]
    closure = np.clip(vis[:, 3], 0.0, 1.0)[:, None]
    brow_raise = np.clip(expr[:, 0], -1.0, 1.0)[:, None]
    furrow = np.clip(expr[:, 1], 0.0, 1.0)[:, None]
    smile = np.clip(expr[:, 2], -1.0, 1.0)[:, None]
    eye_open = np.clip(expr[:, 3], -1.0, 1.0)[:, None]
    blink = np.clip(expr[:, 4], 0.0, 1.0)[:, None]

    p = np.broadcast_to(base, (t, NUM_LANDMARKS, 3)).copy()
    side = _side(base)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]  # views: edits go into p

    # --- mouth shape, in the closed-jaw position -------------------------------------------
    mouth = np.arange(48, 68)
    mouth_x0 = 0.5 * (base[48, 0] + base[54, 0])
    # Lateral weight: 1 at the corners, ~0.5 next to them, 0 on the midline.
    half_width = 0.5 * (base[54, 0] - base[48, 0])
    lateral = np.clip(np.abs(base[mouth, 0] - mouth_x0) / half_width, 0.0, 1.0) ** 1.5
    # lip_width: corners out (spread) or in; spreading also flattens the lips a little.
    x[:, mouth] += 0.05 * lip_width * lateral * side[mouth]
    z[:, mouth] -= 0.02 * lip_width * (1.0 - 0.5 * lateral)
    # smile: corners up and (for a smile, not a frown) out and back.
    y[:, mouth] -= 0.055 * smile * lateral
    x[:, mouth] += 0.035 * np.maximum(smile, 0.0) * lateral * side[mouth]
    z[:, mouth] -= 0.02 * np.maximum(smile, 0.0) * lateral
    # rounding: lips gather toward the midline and protrude (most at the centre); the inner
    # opening narrows more than the outer contour.
    inner = np.isin(mouth, INNER_LIP)
    gather = np.where(inner, 0.5, 0.28)
    x[:, mouth] = mouth_x0 + (x[:, mouth] - mouth_x0) * (1.0 - gather * rounding)
    z[:, mouth] += 0.08 * rounding * (1.0 - 0.4 * lateral)
    # Rounded lips part a little even with the jaw closed.
    y[:, UPPER_INNER] -= 0.012 * rounding
    y[:, LOWER_INNER] += 0.018 * rounding
    y[:, UPPER_OUTER] -= 0.006 * rounding
    y[:, LOWER_OUTER] += 0.009 * rounding

    # --- mandible rotation ---------------------------------------------------------------------
    weight = np.zeros(NUM_LANDMARKS)
    weight[JAW] = [0, 0, 0.25, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1, 0.9, 0.6, 0.25, 0, 0]
    weight[LOWER_OUTER] = 1.0
    weight[LOWER_INNER] = 1.0
    weight[[48, 54]] = 0.45
    weight[[60, 64]] = 0.5
    angle = _JAW_OPEN_MAX_RAD * jaw_open * weight  # (T, 68)
    dy = y - _JAW_HINGE[1]
    dz = z - _JAW_HINGE[2]
    c, s = np.cos(angle), np.sin(angle)
    # Opening turns the chin down and back: a rotation about the hinge's x axis.
    y_new = _JAW_HINGE[1] + c * dy + s * dz
    z_new = _JAW_HINGE[2] - s * dy + c * dz
    y[:], z[:] = y_new, z_new
    # The upper lip lifts slightly as the mouth opens wide.
    y[:, UPPER_INNER] -= 0.02 * jaw_open
    y[:, UPPER_OUTER] -= 0.01 * jaw_open

    # Rounding makes the opening round: the inner half-width follows the vertical gap.
    gap = y[:, 66] - y[:, 62]
    target = np.maximum(0.6 * gap, 0.04)[:, None]
    current = np.maximum(x[:, [64]] - mouth_x0, 1e-6)
    scale = 1.0 + rounding * (np.minimum(target / current, 1.0) - 1.0)
    x[:, INNER_LIP] = mouth_x0 + (x[:, INNER_LIP] - mouth_x0) * scale

    # --- closure: inner lips meet, outer lips follow -----------------------------------------
    mid = 0.5 * (p[:, UPPER_INNER] + p[:, LOWER_INNER])
    d_up = closure[..., None] * (mid - p[:, UPPER_INNER])
    d_lo = closure[..., None] * (mid - p[:, LOWER_INNER])
    p[:, UPPER_INNER] += d_up
    p[:, LOWER_INNER] += d_lo
    # Outer columns 49-53 / 59-55 follow the nearest inner column (corners stay).
    follow = [0, 0, 1, 2, 2]
    gain = np.array([0.6, 1.0, 1.0, 1.0, 0.6])[None, :, None]
    p[:, UPPER_OUTER] += gain * d_up[:, follow]
    p[:, LOWER_OUTER] += gain * d_lo[:, follow]

    # --- brows ---------------------------------------------------------------------------------
    y[:, BROWS] -= 0.06 * brow_raise
    inner_w = np.array([0.2, 0.35, 0.6, 0.85, 1.0, 1.0, 0.85, 0.6, 0.35, 0.2])
    x[:, BROWS] -= 0.035 * furrow * inner_w * side[BROWS]
    y[:, BROWS] += 0.035 * furrow * inner_w
    y[:, UPPER_LID] -= 0.008 * brow_raise

    # --- eyelids -------------------------------------------------------------------------------
    y[:, UPPER_LID] -= 0.022 * eye_open
    y[:, LOWER_LID] += 0.008 * eye_open
    y[:, LOWER_LID] -= 0.012 * np.maximum(smile, 0.0)  # cheeks push the lower lids up
    # Lids never cross; blink closes them on a line near the lower lid.
    y[:, UPPER_LID] = np.minimum(y[:, UPPER_LID], y[:, LOWER_LID] - 1e-3)
    upper, lower = p[:, UPPER_LID], p[:, LOWER_LID]
    closed = lower + 0.25 * (upper - lower)
    p[:, UPPER_LID] = upper + blink[..., None] * (closed - upper)
    p[:, LOWER_LID] = lower + blink[..., None] * (closed - lower)
    return p


def euler_to_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Head rotation ``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` from radians (any broadcastable shapes).

    Returns shape ``broadcast(yaw, pitch, roll).shape + (3, 3)``. Signs: see the module docstring.
    """
    yaw, pitch, roll = np.broadcast_arrays(
        np.asarray(yaw, dtype=np.float64), np.asarray(pitch, dtype=np.float64), np.asarray(roll, dtype=np.float64)
    )
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    # Pitch sign: positive pitch moves +z (the nose) toward -y (image up).
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return ry @ rx @ rz


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(points)
    if p.ndim != 3 or p.shape[1:] != (NUM_LANDMARKS, 3):
        raise ValueError(f"{name} must have shape (T, 68, 3), got {p.shape}")
    return p


def apply_pose(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Face-local (T, 68, 3) -> world (T, 68, 3): ``R[t] @ p + T[t]`` per frame."""
    p = _check_points(points, "points")
    r = np.asarray(rotation)
    tr = np.asarray(translation)
    if r.shape != (len(p), 3, 3):
        raise ValueError(f"rotation must have shape ({len(p)}, 3, 3) to match points, got {r.shape}")
    if tr.shape != (len(p), 3):
        raise ValueError(f"translation must have shape ({len(p)}, 3) to match points, got {tr.shape}")
    dtype = np.result_type(p.dtype, r.dtype, tr.dtype, np.float32)
    return (np.einsum("tij,tnj->tni", r, p) + tr[:, None, :]).astype(dtype, copy=False)


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole camera at ``(0, look_y, distance)`` looking down -z (image y down).

    ``focal`` is in image widths (the focal length in pixels is ``focal * image_size``). The
    defaults frame a VoxCeleb-like face-centred crop: at the identity pose the landmark box is
    centred and the jaw spans ~47 % of the width; 10 face units (~0.9 m) away gives a mild
    perspective.
    """

    distance: float = 10.0
    focal: float = 2.72
    look_y: float = 0.17

    def __post_init__(self):
        if not self.distance > 3.0:
            raise ValueError(
                f"Camera.distance must be > 3 face units (the head must be in front of the camera), got {self.distance}"
            )
        if not self.focal > 0.0:
            raise ValueError(f"Camera.focal must be > 0, got {self.focal}")

    def focal_px(self, image_size: int) -> float:
        """Focal length in pixels for a square image of `image_size`."""
        return self.focal * image_size

    def center_px(self, image_size: int) -> float:
        """Principal point (both axes), pixel centres at integers."""
        return 0.5 * (image_size - 1)


def check_image_size(image_size: int, name: str = "image_size") -> int:
    """Returns `image_size` as an int, or raises a ValueError naming `name`."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise ValueError(f"{name} must be an integer >= 32 (e.g. 64, 128 or 256), got {image_size!r}")
    return int(image_size)


def project(points_world: np.ndarray, image_size: int, camera: Camera = Camera()) -> np.ndarray:
    """World points (..., 3) -> pixel coordinates (..., 2), float (x right, y down; pixel centres
    at integers). The documented use is (T, 68, 3) -> (T, 68, 2)."""
    size = check_image_size(image_size)
    p = np.asarray(points_world)
    if p.ndim < 1 or p.shape[-1] != 3:
        raise ValueError(f"points_world must have a last axis of 3 (x, y, z), got shape {p.shape}")
    dtype = np.result_type(p.dtype, np.float32)
    p = p.astype(np.float64, copy=False)
    depth = camera.distance - p[..., 2]
    if np.any(depth <= 0.1):
        raise ValueError("points_world has points at or behind the camera plane; check the translation's z")
    f = camera.focal_px(size)
    c = camera.center_px(size)
    u = c + f * p[..., 0] / depth
    v = c + f * (p[..., 1] - camera.look_y) / depth
    return np.stack([u, v], axis=-1).astype(dtype, copy=False)
