"""SynthTalk renderer: a shaded head (skin, hair, eyes, brows, nose, lips, mouth) in front of a
per-clip background, drawn from the articulated 3-D landmarks and the head pose.

Numpy + Pillow only (runs inside grain workers); deterministic (no RNG, no threads).

How a frame is made
-------------------
* The head's volume is a few ellipsoids placed from the landmarks (cranium, lower face, nose,
  nose base; a slightly larger one for the hair, one behind for long hair). Each pixel casts a
  ray through the same pinhole as `face.project`; the nearest hits are blended over a short depth
  range (a soft z-buffer), which gives pose-correct Lambert + ambient shading without creases.
  The jaw contour (a polygon) bounds the lower face; the skin darkens toward its silhouette.
* Silhouettes of ellipsoids get analytic anti-aliasing (signed distance from the projected conic);
  polygons (jaw contour, eyes, brows, lips, mouth, teeth, ears, neck, clothes) are filled by
  Pillow at 4x resolution and box-filtered, so edge pixels take intermediate values.
* Layers are composited back to front: background, long hair, clothes, neck, far ear, skin, hair,
  near ear, eyes, brows, nostrils, mouth interior, tongue and teeth, lips. Every feature is drawn
  from the projected landmarks themselves, so it sits exactly on the ground-truth points.
* The body (neck base, shoulders) follows the head's translation but not its rotation.

Cost: one Python pass per frame over small windows (head, eyes, mouth, ...); about 2 / 3 / 6.5 ms
per frame at 64 / 128 / 256 px on one core.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from data_pipelines.synthtalk.checks import Rule, check_fields, checked, in_range, one_of
from data_pipelines.synthtalk.face import Camera, check_image_size, project

__all__ = ["Appearance", "HAIR_STYLES", "BACKGROUND_PATTERNS", "render_frames", "sample_appearance"]

HAIR_STYLES = ("short", "long", "buzz", "bald")
BACKGROUND_PATTERNS = ("linear", "radial", "stripes", "blobs")
_SS = 4  # polygon supersampling factor per axis (17 coverage levels)
_TILE_GAP = 6  # pixels between the tiles of a shared mask canvas

RGB = tuple[float, float, float]
_COLOUR = in_range(0.0, 1.0, shape=(3,))  # sRGB


@dataclasses.dataclass(frozen=True)
class Appearance:
    """Colours (sRGB in [0, 1]) and styles of one speaker and one recording setting."""

    skin_rgb: RGB = checked(_COLOUR)
    hair_rgb: RGB = checked(_COLOUR)
    brow_rgb: RGB = checked(_COLOUR)
    hair_style: str = checked(one_of(HAIR_STYLES))
    hairline: float  # forehead height: 0 average, +1 high (receding), -1 low
    iris_rgb: RGB = checked(_COLOUR)
    lip_rgb: RGB = checked(_COLOUR)
    clothing_rgb: RGB = checked(_COLOUR)
    background_rgb: tuple[RGB, RGB] = checked(in_range(0.0, 1.0, shape=(2, 3)))  # two colours
    background_pattern: str = checked(one_of(BACKGROUND_PATTERNS))
    background_angle: float  # radians, direction of the gradient / stripes
    background_seed: int  # places the blobs of the "blobs" pattern
    # Unit vector toward the light (x right, y down, z to camera).
    light_dir: tuple[float, float, float] = checked(
        Rule(lambda v: abs(np.linalg.norm(v) - 1.0) <= 1e-3, "must be a unit vector")
    )

    def __post_init__(self):
        check_fields(self)


# ----------------------------------------------------------------------------------------------
# Sampling appearances.

# Skin tones from light to dark (sRGB), interpolated along this path.
_SKIN_PATH = np.array(
    [
        (0.98, 0.86, 0.76),
        (0.93, 0.76, 0.63),
        (0.84, 0.64, 0.49),
        (0.70, 0.50, 0.36),
        (0.55, 0.37, 0.25),
        (0.40, 0.26, 0.17),
        (0.29, 0.19, 0.13),
    ]
)
_HAIR_COLOURS = {
    "black": ((0.07, 0.06, 0.06), 0.30),
    "dark_brown": ((0.17, 0.11, 0.08), 0.25),
    "brown": ((0.33, 0.22, 0.14), 0.16),
    "light_brown": ((0.52, 0.38, 0.24), 0.08),
    "blond": ((0.78, 0.64, 0.40), 0.08),
    "red": ((0.55, 0.24, 0.11), 0.04),
    "grey": ((0.55, 0.54, 0.52), 0.06),
    "white": ((0.85, 0.84, 0.82), 0.03),
}
_IRIS_COLOURS = (
    (0.25, 0.15, 0.08),
    (0.38, 0.24, 0.12),
    (0.12, 0.08, 0.05),
    (0.42, 0.40, 0.20),
    (0.25, 0.42, 0.60),
    (0.35, 0.48, 0.35),
    (0.45, 0.50, 0.55),
)


def _hsv_to_rgb(h: float, s: float, v: float) -> RGB:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _rgb(values) -> RGB:
    return tuple(float(np.clip(v, 0.0, 1.0)) for v in values)  # type: ignore[return-value]


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random look: skin light..dark, hair colour and style (rarely grey or bald), eyes, lips,
    clothes, background and light, all from `rng`."""
    pos = rng.uniform(0.0, len(_SKIN_PATH) - 1.0)
    i = min(int(pos), len(_SKIN_PATH) - 2)
    skin = (1 - (pos - i)) * _SKIN_PATH[i] + (pos - i) * _SKIN_PATH[i + 1]
    skin = skin * rng.uniform(0.95, 1.05) + rng.normal(0.0, 0.015, 3)
    skin = np.clip(skin, 0.05, 1.0)
    names = list(_HAIR_COLOURS)
    probs = np.array([_HAIR_COLOURS[n][1] for n in names])
    hair_name = names[rng.choice(len(names), p=probs / probs.sum())]
    hair = np.clip(np.array(_HAIR_COLOURS[hair_name][0]) * rng.uniform(0.85, 1.15), 0.0, 1.0)
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=[0.5, 0.3, 0.13, 0.07])]
    # Brows: darker than the hair (and than light skin), never lighter than a mid brown.
    brow = np.minimum(hair * 0.7, np.array([0.32, 0.24, 0.18])) if hair_name not in ("grey", "white") else hair * 0.55
    if style == "bald" and hair_name in ("blond", "white", "grey"):
        brow = np.array([0.35, 0.30, 0.26])
    iris = np.array(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]) * rng.uniform(0.85, 1.15)
    # Lips: the skin tone shifted to red and slightly darker.
    lip = skin * np.array([0.88, 0.58, 0.58]) + np.array([0.06, 0.0, 0.02])
    lip = lip * rng.uniform(0.85, 1.0)
    clothing = np.array(_hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.8), rng.uniform(0.12, 0.9)))
    # Background: two related colours, kept away from the skin tone.
    while True:
        h = rng.uniform()
        s = rng.uniform(0.05, 0.6)
        v = rng.uniform(0.15, 0.95)
        bg_a = np.array(_hsv_to_rgb(h, s, v))
        h_b = (h + rng.normal(0.0, 0.08)) % 1.0
        s_b = np.clip(s * rng.uniform(0.5, 1.5), 0, 1)
        v_b = np.clip(v * rng.uniform(0.55, 1.3), 0, 1)
        bg_b = np.array(_hsv_to_rgb(h_b, s_b, v_b))
        if min(np.abs(bg_a - skin).sum(), np.abs(bg_b - skin).sum()) > 0.35:
            break
    elevation = rng.uniform(np.deg2rad(10), np.deg2rad(50))
    azimuth = rng.uniform(-np.deg2rad(50), np.deg2rad(50))
    # Toward the light: up (-y), to the side (x) and toward the camera (+z).
    light = np.array([np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), np.cos(azimuth) * np.cos(elevation)])
    return Appearance(
        skin_rgb=_rgb(skin),
        hair_rgb=_rgb(hair),
        brow_rgb=_rgb(brow),
        hair_style=style,
        hairline=float(np.clip(rng.normal(0.0, 0.5), -1.0, 1.0)),
        iris_rgb=_rgb(iris),
        lip_rgb=_rgb(lip),
        clothing_rgb=_rgb(clothing),
        background_rgb=(_rgb(bg_a), _rgb(bg_b)),
        background_pattern=BACKGROUND_PATTERNS[rng.integers(len(BACKGROUND_PATTERNS))],
        background_angle=float(rng.uniform(0.0, 2 * np.pi)),
        background_seed=int(rng.integers(2**31 - 1)),
        light_dir=tuple(float(v) for v in light / np.linalg.norm(light)),  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------------------------
# Background.


def _background(app: Appearance, size: int) -> np.ndarray:
    """(size, size, 3) float32, the same for every frame of a clip."""
    a = np.asarray(app.background_rgb[0], np.float32)
    b = np.asarray(app.background_rgb[1], np.float32)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    x = coords[None, :]
    y = coords[:, None]
    ca, sa = np.float32(np.cos(app.background_angle)), np.float32(np.sin(app.background_angle))
    along = x * ca + y * sa
    if app.background_pattern == "linear":
        w = np.clip(along + 0.5, 0.0, 1.0)
    elif app.background_pattern == "radial":
        cx, cy = 0.25 * ca, 0.25 * sa
        w = np.clip(np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / 0.9, 0.0, 1.0)
    elif app.background_pattern == "stripes":
        period = 0.18 + 0.1 * abs(np.sin(3.0 * app.background_angle))
        w = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
        w = 0.15 + 0.7 * w * w * (3 - 2 * w)  # soft-edged stripes
    else:  # blobs: out-of-focus shapes, like a room behind the speaker
        g = np.random.Generator(np.random.PCG64(app.background_seed))  # from the appearance only
        w = np.zeros((size, size), np.float32) + 0.15 * (along + 0.5)
        for _ in range(6):
            cx, cy = g.uniform(-0.55, 0.55, 2)
            r = g.uniform(0.08, 0.3)
            w += g.uniform(0.3, 0.8) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        w = np.clip(w, 0.0, 1.0)
    w = np.asarray(np.broadcast_to(w, (size, size)), np.float32)
    return (a + (b - a) * w[..., None]).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Pixel windows, Pillow masks and compositing.


class _Window:
    """A pixel rectangle [r0, r1) x [c0, c1) clipped to the image; empty if r0 >= r1."""

    __slots__ = ("r0", "r1", "c0", "c1", "clipped")

    def __init__(self, lo, hi, size: int, pad: float = 2.0):
        c0, r0 = int(np.floor(lo[0] - pad)), int(np.floor(lo[1] - pad))
        c1, r1 = int(np.ceil(hi[0] + pad)) + 1, int(np.ceil(hi[1] + pad)) + 1
        self.c0, self.r0, self.c1, self.r1 = max(c0, 0), max(r0, 0), min(c1, size), min(r1, size)
        self.clipped = (self.c0, self.r0, self.c1, self.r1) != (c0, r0, c1, r1)

    @staticmethod
    def of(points: np.ndarray, size: int, pad: float = 2.0) -> "_Window":
        pts = np.asarray(points).reshape(-1, 2)
        return _Window(pts.min(axis=0), pts.max(axis=0), size, pad)

    def within(self, other: "_Window") -> "_Window":
        """The intersection with another window."""
        out = object.__new__(_Window)
        out.r0, out.c0 = max(self.r0, other.r0), max(self.c0, other.c0)
        out.r1, out.c1 = min(self.r1, other.r1), min(self.c1, other.c1)
        out.clipped = self.clipped or (out.r0, out.c0, out.r1, out.c1) != (self.r0, self.c0, self.r1, self.c1)
        return out

    @property
    def empty(self) -> bool:
        return self.r0 >= self.r1 or self.c0 >= self.c1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r1 - self.r0, self.c1 - self.c0)

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.r0, self.r1), slice(self.c0, self.c1)

    def rows(self) -> np.ndarray:
        return np.arange(self.r0, self.r1, dtype=np.float32)[:, None]

    def cols(self) -> np.ndarray:
        return np.arange(self.c0, self.c1, dtype=np.float32)[None, :]


def _draw(draw: ImageDraw.ImageDraw, shape, off: np.ndarray) -> None:
    """Draws one shape at _SS x resolution; `off` maps window pixel coordinates to the canvas.

    Pixel centres are at integers and canvas pixel k covers [k, k + 1), hence the + 0.5.
    """
    kind = shape[0]
    if kind == "poly":
        pts = (np.asarray(shape[1], np.float64) + off) * _SS
        if len(pts) >= 3:
            draw.polygon(pts.ravel().tolist(), fill=255)
    elif kind == "ellipse":
        c = (np.asarray(shape[1], np.float64) + off) * _SS
        r = np.asarray(shape[2], np.float64) * _SS
        if r.min() > 0.25:
            draw.ellipse((c - r).tolist() + (c + r).tolist(), fill=255)
    else:  # line
        pts = (np.asarray(shape[1], np.float64) + off) * _SS
        draw.line(pts.ravel().tolist(), fill=255, width=max(int(round(shape[2] * _SS)), 1), joint="curve")


def _masks(win: _Window, layers: list[list]) -> np.ndarray:
    """Coverage (K, h, w) float32 in [0, 1] of K layers, each a union of shapes.

    Shapes are ("poly", (N, 2) pixels) | ("ellipse", centre, radii) | ("line", points, width),
    filled at _SS x resolution and box-filtered. The layers share one canvas, one tile each
    (one resize for a whole feature group); tiles are _TILE_GAP pixels apart, so shapes may
    overhang the window (made from their points, with a pad) by that much. A window clipped at
    the image border may be overhung by anything: then each layer gets its own canvas.
    """
    h, w = win.shape
    if win.clipped and len(layers) > 1:
        return np.concatenate([_masks(win, [layer]) for layer in layers])
    step = h + _TILE_GAP
    img = Image.new("L", (w * _SS, (step * len(layers) - _TILE_GAP) * _SS), 0)
    draw = ImageDraw.Draw(img)
    for i, layer in enumerate(layers):
        off = np.array([0.5 - win.c0, 0.5 - win.r0 + i * step])
        for shape in layer:
            _draw(draw, shape, off)
    cov = np.asarray(img.reduce(_SS), np.float32)
    if len(layers) > 1:
        cov = np.pad(cov, ((0, _TILE_GAP), (0, 0))).reshape(len(layers), step, w)[:, :h]
    else:
        cov = cov[None]
    return cov * np.float32(1.0 / 255.0)


def _stack(img: np.ndarray, win: _Window, covs, colours) -> None:
    """Composites K layers back to front (layer 0 first), as K successive "over" operations.

    covs (K, h, w); colours: K entries, each (3,) or broadcastable to (h, w, 3).
    """
    if win.empty:
        return
    covs = np.asarray(covs, np.float32)
    region = img[win.slices]
    trans = 1.0 - covs
    # suffix[k]: transmittance of the layers in front of layer k.
    suffix = np.ones_like(covs)
    if len(covs) > 1:
        suffix[:-1] = np.cumprod(trans[:0:-1], axis=0)[::-1]
    weights = covs * suffix
    region *= (trans[0] * suffix[0])[..., None]
    constant = [k for k, c in enumerate(colours) if np.ndim(c) == 1]
    if constant:
        table = np.array([colours[k] for k in constant], np.float32)
        region += np.einsum("khw,kc->hwc", weights[constant], table)
    for k, c in enumerate(colours):
        if np.ndim(c) != 1:
            region += weights[k][..., None] * c


def _smoothstep(e0: float, e1: float, x):
    t = np.clip((x - e0) * (1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(win: _Window, centre, radius, amount: float) -> np.ndarray:
    """amount * exp(-|d|^2 / 2) over the window, d scaled by `radius` (separable)."""
    rr = (win.rows() - np.float32(centre[1])) * np.float32(1.0 / radius[1])
    cc = (win.cols() - np.float32(centre[0])) * np.float32(1.0 / radius[0])
    return (np.float32(amount) * np.exp(-0.5 * rr * rr)) * np.exp(-0.5 * cc * cc)


def _blur(cov: np.ndarray, radius: float) -> np.ndarray:
    im = Image.fromarray(np.clip(cov * 255.0 + 0.5, 0, 255).astype(np.uint8))
    out = im.filter(ImageFilter.GaussianBlur(float(max(radius, 0.5))))
    return np.asarray(out, np.float32) * np.float32(1.0 / 255.0)


def _stroke(pts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """A closed polygon around a 2-D polyline with per-vertex widths (pixels)."""
    tangent = np.empty_like(pts)
    tangent[1:-1] = pts[2:] - pts[:-2]
    tangent[0] = pts[1] - pts[0]
    tangent[-1] = pts[-1] - pts[-2]
    tangent /= np.sqrt((tangent**2).sum(axis=1, keepdims=True)) + 1e-9
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) * (0.5 * widths[:, None])
    return np.concatenate([pts + normal, (pts - normal)[::-1]])


# ----------------------------------------------------------------------------------------------
# Ray casting against ellipsoids.


class _Caster:
    """Camera rays of one pixel window, cast against ellipsoids (centre, axes, radii in world)."""

    def __init__(self, camera: Camera, size: int, win: _Window):
        f = camera.focal_px(size)
        c = camera.center_px(size)
        self.f = f
        self.origin = np.array([0.0, camera.look_y, camera.distance])
        self.du = ((np.arange(win.c0, win.c1) - c) / f).astype(np.float32)[None, :]
        self.dv = ((np.arange(win.r0, win.r1) - c) / f).astype(np.float32)[:, None]
        self.dudv = self.dv * self.du

    def _quadratic(self, q: np.ndarray) -> np.ndarray:
        """[du dv 1] Q [du dv 1]^T per pixel for a symmetric 3x3 float32 Q."""
        row = (q[0, 0] * self.du + 2 * q[0, 2]) * self.du + q[2, 2]
        col = (q[1, 1] * self.dv + 2 * q[1, 2]) * self.dv
        return (row + col) + (2 * q[0, 1]) * self.dudv

    def cast(self, centre: np.ndarray, axes: np.ndarray, radii: np.ndarray, light: np.ndarray):
        """(coverage, depth t, n.l, unit-sphere hit point q as 3 arrays) over the window.

        A ray is camera + t * (du, dv, -1); the ellipsoid is |axes^T (x - centre) / radii| = 1.
        Where a ray misses, t and q are those of its closest approach, so n.l continues smoothly
        past the silhouette (coverage handles the edge).
        """
        inv = axes.T / radii[:, None]  # unit-sphere-from-world, without the translation
        o = inv @ (self.origin - centre)
        m = inv.copy()
        m[:, 2] *= -1.0
        g = m.T @ m
        b = m.T @ o
        disc_q = (np.outer(b, b) - (o @ o - 1.0) * g).astype(np.float32)
        g = g.astype(np.float32)
        b = b.astype(np.float32)
        disc = self._quadratic(disc_q)
        a = self._quadratic(g)
        bb = (b[0] * self.du + b[2]) + b[1] * self.dv
        gu = (disc_q[0, 0] * self.du + disc_q[0, 2]) + disc_q[0, 1] * self.dv
        gv = (disc_q[0, 1] * self.du + disc_q[1, 2]) + disc_q[1, 1] * self.dv
        # Signed distance to the silhouette conic in pixels, to first order: analytic coverage.
        grad = np.sqrt(gu * gu + gv * gv) * np.float32(2.0 / self.f) + np.float32(1e-12)
        cov = np.clip(disc / grad + 0.5, 0.0, 1.0)
        t = (-bb - np.sqrt(np.maximum(disc, 0.0))) / a
        o32, m32 = o.astype(np.float32), m.astype(np.float32)
        q = [o32[i] + t * ((m32[i, 0] * self.du + m32[i, 2]) + m32[i, 1] * self.dv) for i in range(3)]
        lt = ((axes.T @ light) / radii).astype(np.float32)
        r2 = (1.0 / radii**2).astype(np.float32)
        norm = np.sqrt(q[0] * q[0] * r2[0] + q[1] * q[1] * r2[1] + q[2] * q[2] * r2[2])
        ndotl = (q[0] * lt[0] + q[1] * lt[1] + q[2] * lt[2]) / norm
        return cov, t, ndotl, q


# ----------------------------------------------------------------------------------------------
# Clip geometry, computed for all frames at once.


def _rot_x(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    return np.stack([np.stack([one, zero, zero], -1), np.stack([zero, c, -s], -1), np.stack([zero, s, c], -1)], -2)


_EXTENT = np.array([[0.0, -1.4, -0.77], [-1.0, -0.3, -0.77], [1.0, -0.3, -0.77], [0.0, -0.3, 0.4]])
_LONG_EXTENT = np.array([[-1.1, -1.3, -0.95], [1.1, -1.3, -0.95], [-1.1, 1.9, -0.95], [1.1, 1.9, -0.95]])
_EAR_THETA = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
# Shoulder line from the neck outward (x, y below the eye line), mirrored for the left side.
_BODY = np.array(
    [(0.55, 1.83), (0.9, 1.96), (1.3, 2.1), (1.65, 2.3), (1.9, 2.6), (2.05, 3.0), (2.15, 3.6), (2.2, 4.6)]
)
_NECKLINE_ARC = np.linspace(0.0, np.pi, 9)
_TEETH_X = np.linspace(-0.19, 0.19, 7)  # canine to canine


class _ClipGeometry:
    """Projected landmarks, helper points and ellipsoids of every frame of a clip."""

    def __init__(self, pts: np.ndarray, rot: np.ndarray, tr: np.ndarray, size: int, camera: Camera):
        t = len(pts)
        self.rot, self.tr = rot, tr
        e0 = 0.5 * (pts[:, 36] + pts[:, 45])
        # Face width relative to the mean face (bounded: the landmarks may come from anywhere).
        sx = np.clip((pts[:, 16, 0] - pts[:, 0, 0]) / 1.68, 0.3, 3.0)
        hw = 0.5 + 0.5 * sx  # the skull widens half as much as the face
        self.sx = sx
        depth = camera.distance - (np.einsum("tij,tj->ti", rot, e0) + tr)[:, 2]
        self.ppu = camera.focal_px(size) / depth  # pixels per face unit at the eyes

        def rel(offsets, xscale=None):
            off = np.broadcast_to(np.asarray(offsets, np.float64), (t,) + np.shape(offsets)[-2:]).copy()
            if xscale is not None:
                off[..., 0] *= xscale[:, None]
            return e0[:, None, :] + off

        groups: dict[str, np.ndarray] = {"lm": pts}
        groups["extent"] = rel(_EXTENT, hw)
        groups["long_extent"] = rel(_LONG_EXTENT, hw)
        groups["neck_top"] = rel([[-0.5, 0.6, -0.95], [0.5, 0.6, -0.95]], sx)
        ears = []
        for side in (-1.0, 1.0):
            up = np.array([0.0, 0.27, 0.0])
            out_dir = np.array([side * 0.5, 0.0, -0.87]) * 0.15
            ring = np.cos(_EAR_THETA)[:, None] * up + np.sin(_EAR_THETA)[:, None] * out_dir
            ring[:, 0] += side * 0.07 * np.clip(np.sin(_EAR_THETA), 0.0, None) * (1.0 - 0.3 * np.cos(_EAR_THETA))
            inner = 0.55 * ring + np.array([side * 0.02, 0.03, 0.0])
            centre = rel([[side * 0.84, 0.25, -0.84]], hw)
            ears += [centre + ring, centre + inner]
        groups["ears"] = np.concatenate(ears, axis=1)  # image-left ear (rim, inner), image-right ear
        eyes = np.stack([0.5 * (pts[:, 36] + pts[:, 39]), 0.5 * (pts[:, 42] + pts[:, 45])], 1)
        groups["iris"] = eyes + [0.0, 0.004, 0.03]
        crease = np.concatenate([pts[:, 36:40], pts[:, 42:46]], axis=1) + [0.0, -0.04, 0.0]
        crease[:, [0, 3, 4, 7], 1] += 0.025
        groups["crease"] = crease
        nostrils = np.stack([0.5 * (pts[:, 31] + pts[:, 32]), 0.5 * (pts[:, 35] + pts[:, 34])], 1)
        groups["nostrils"] = nostrils + [0.0, -0.012, -0.01]
        # Teeth: the upper arch is fixed to the skull (eye frame), the lower one rides on the
        # mandible (the inner lower lip); both curve back at the sides.
        xs = _TEETH_X
        gum = np.stack([xs, np.full(7, 0.66), 0.17 - xs**2], -1)
        edge = np.stack([xs, 0.8 + 0.12 * xs**2, 0.17 - xs**2], -1)
        upper = np.concatenate([gum, edge[::-1]])
        groups["upper_teeth"] = rel(upper)
        lx = 0.85 * xs
        edge = np.stack([lx, -0.035 + 0.1 * lx**2, -0.04 - lx**2], -1)
        gum = np.stack([lx, np.full(7, 0.07), -0.04 - lx**2], -1)
        lower = np.concatenate([edge, gum[::-1]])
        groups["lower_teeth"] = pts[:, 66:67] + lower
        groups["tongue"] = pts[:, 66:67] + np.array([[0.0, -0.03, -0.08]])
        names = list(groups)
        counts = [groups[n].shape[1] for n in names]
        local = np.concatenate([groups[n] for n in names], axis=1)
        posed = np.einsum("tij,tnj->tni", rot, local) + tr[:, None, :]
        flat = project(posed, size, camera)
        self.p2 = dict(zip(names, np.split(flat, np.cumsum(counts)[:-1], axis=1)))

        # The body follows the head's translation but not its rotation.
        scale = (0.8 + 0.2 * sx)[:, None]
        ey = e0[:, 1:2]
        bx = np.concatenate([-_BODY[:, 0], _BODY[::-1, 0]])
        by = np.concatenate([_BODY[:, 1], _BODY[::-1, 1]])
        torso = np.stack([bx * scale, by + ey, np.full((t, len(bx)), -0.8)], -1)
        arc = np.broadcast_to(_NECKLINE_ARC, (t, 9))
        neckline = np.stack([-0.52 * np.cos(arc), 1.84 + ey + 0.32 * np.sin(arc), np.full((t, 9), -0.55)], -1)
        neck_x = np.concatenate([0.55 * scale, -0.55 * scale], 1)
        neck_bottom = np.stack([neck_x, np.concatenate([1.95 + ey] * 2, 1), np.full((t, 2), -0.8)], -1)
        body = np.concatenate([torso, neckline, neck_bottom], axis=1) + tr[:, None, :]
        body2 = project(body, size, camera)
        split = np.split(body2, [len(bx), len(bx) + 9], axis=1)
        self.p2["torso"], self.p2["neckline"], self.p2["neck_bottom"] = split

        # Ellipsoids: (centre local (T, 3), radii (T, 3), axes local (T, 3, 3) or None).
        def ell(centre, radii, axes=None):
            axes_w = rot if axes is None else rot @ axes
            return (np.einsum("tij,tj->ti", rot, centre) + tr, axes_w, np.asarray(radii, np.float64))

        one = np.ones(t)
        self.ells = {
            "cranium": ell(e0 + [0.0, -0.25, -0.75], np.stack([0.86 * hw, one, 1.05 * one], -1)),
            "face": ell(e0 + [0.0, 0.5, -0.45], np.stack([0.88 * sx, 0.85 * one, 0.72 * one], -1)),
            "hair": ell(e0 + [0.0, -0.29, -0.77], np.stack([0.86 * hw + 0.06, 1.06 * one, 1.11 * one], -1)),
            "mass": ell(e0 + [0.0, 0.3, -0.95], np.stack([0.98 * hw, 1.55 * one, 0.7 * one], -1)),
        }
        # Nose: a ridge from the nasion (27) to the tip (30), tilted like the bridge, and a base.
        ridge = pts[:, 30] - pts[:, 27]
        length = np.sqrt(ridge[:, 1] ** 2 + ridge[:, 2] ** 2)
        tilt = _rot_x(-np.arctan2(ridge[:, 2], ridge[:, 1]))
        width = np.linalg.norm(pts[:, 35] - pts[:, 31], axis=1)
        depth_n = 0.11
        centre = pts[:, 27] + 0.58 * ridge - depth_n * tilt[:, :, 2]
        self.ells["nose"] = ell(centre, np.stack([0.3 * width, 0.6 * length, depth_n * one], -1), tilt)
        base_x = 0.5 * (pts[:, 31, 0] + pts[:, 35, 0])
        base_y = 0.5 * (pts[:, 30, 1] + pts[:, 33, 1]) + 0.01
        base = np.stack([base_x, base_y, pts[:, 33, 2] - 0.05], -1)
        self.ells["nose_base"] = ell(base, np.stack([0.55 * width, 0.08 * one, 0.12 * one], -1))
        # Which ear faces the camera (drawn over the head) in each frame.
        self.ear_facing = np.stack([-rot[:, 2, 0], rot[:, 2, 0]], -1)
        # How much of the nostrils the camera sees (they open downward and a little forward).
        down = np.einsum("tij,j->ti", rot, np.array([0.0, 1.0, 0.35]) / np.hypot(1.0, 0.35))
        self.nostril_view = np.clip(down[:, 2], 0.0, 1.0)
        self.gap = np.linalg.norm(pts[:, 66] - pts[:, 62], axis=1)

    def ellipsoid(self, name: str, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, a, r = self.ells[name]
        return c[t], a[t], r[t]


# ----------------------------------------------------------------------------------------------
# One frame.


_SCLERA = np.array([0.9, 0.88, 0.84], np.float32)
_PUPIL = np.array([0.03, 0.03, 0.03], np.float32)
_GLINT = np.array([0.97, 0.97, 0.97], np.float32)
_LASH = np.array([0.06, 0.04, 0.04], np.float32)
_TEETH = np.array([0.9, 0.88, 0.82], np.float32)
_LOWER_TEETH = np.array([0.8, 0.78, 0.72], np.float32)


def _render_frame(
    g: _ClipGeometry, t: int, app: Appearance, size: int, camera: Camera, background: np.ndarray
) -> np.ndarray:
    img = background.copy()
    light = np.asarray(app.light_dir, np.float64)
    skin = np.asarray(app.skin_rgb, np.float32)
    hair_rgb = np.asarray(app.hair_rgb, np.float32)
    p2 = {k: v[t] for k, v in g.p2.items()}
    lm = p2["lm"]
    ppu = float(g.ppu[t])

    # --- head fields: skin and hair over the head window -------------------------------------
    face_poly = lm[0:17]  # closed across the eyes: the cranium covers everything above
    hwin = _Window.of(np.concatenate([face_poly, p2["extent"]]), size, pad=3.0)
    if hwin.empty:
        return _to_uint8(img)
    caster = _Caster(camera, size, hwin)
    cranium = caster.cast(*g.ellipsoid("cranium", t), light)
    face_e = caster.cast(*g.ellipsoid("face", t), light)
    skin_cov = np.maximum(cranium[0], _masks(hwin, [[("poly", face_poly)]])[0])
    # Soft z-buffer: the nearest surfaces win, blended over `tau` face units of depth; a missed
    # ellipsoid is pushed back so that it only counts where nothing else is hit. The nose is
    # favoured by `bias` so that its sides read as edges.
    tau = np.float32(0.1)
    parts = [(cranium, hwin, 0.0), (face_e, hwin, 0.0)]
    nwin = _Window.of(lm[27:36], size, pad=0.12 * ppu + 2.0).within(hwin)
    if not nwin.empty:
        ncast = _Caster(camera, size, nwin)
        parts.append((ncast.cast(*g.ellipsoid("nose", t), light), nwin, 0.06))
        parts.append((ncast.cast(*g.ellipsoid("nose_base", t), light), nwin, 0.03))
    t_eff = []
    for hit, win, bias in parts:
        t_eff.append(hit[1] + 3.0 * (1.0 - hit[0]) - np.float32(bias))
    t_min = np.minimum(t_eff[0], t_eff[1])
    for te, (_, win, _) in zip(t_eff[2:], parts[2:]):
        sub = t_min[win.r0 - hwin.r0 : win.r1 - hwin.r0, win.c0 - hwin.c0 : win.c1 - hwin.c0]
        np.minimum(sub, te, out=sub)
    wsum = np.zeros(hwin.shape, np.float32)
    lit = np.zeros(hwin.shape, np.float32)
    for te, (hit, win, _) in zip(t_eff, parts):
        rs = slice(win.r0 - hwin.r0, win.r1 - hwin.r0)
        cs = slice(win.c0 - hwin.c0, win.c1 - hwin.c0)
        w = np.exp((t_min[rs, cs] - te) / tau)
        wsum[rs, cs] += w
        lit[rs, cs] += w * hit[2]
    ndotl = lit / wsum
    # Rim: skin darkens toward the silhouette (the jaw turns away even where no ellipsoid does).
    rim = 0.72 + 0.28 * _smoothstep(0.5, 0.95, _blur(skin_cov, 0.07 * ppu))
    diffuse = np.clip((ndotl + 0.25) * np.float32(1.0 / 1.25), 0.0, 1.0)
    shade = (0.36 + 0.74 * diffuse) * rim
    # Ambient occlusion: eye sockets, under the lower lip, nasolabial folds.
    dark = _gauss(hwin, lm[36:42].mean(0) - [0, 0.03 * ppu], np.array([0.17, 0.09]) * ppu, 0.22)
    dark += _gauss(hwin, lm[42:48].mean(0) - [0, 0.03 * ppu], np.array([0.17, 0.09]) * ppu, 0.22)
    dark += _gauss(hwin, lm[57] + [0, 0.07 * ppu], np.array([0.13, 0.035]) * ppu, 0.16)
    for a, b in ((31, 48), (35, 54)):
        dark += _gauss(hwin, 0.5 * (lm[a] + lm[b]) + (lm[a] - lm[b]) * 0.1, np.array([0.05, 0.1]) * ppu, 0.08)
    skin_col = skin * (shade * (1.0 - dark))[..., None]
    # Lowest skin row per column: the neck's shadow hangs from it.
    covered = skin_cov > 0.5
    bottom = np.where(covered.any(axis=0), hwin.r1 - 1 - np.argmax(covered[::-1], axis=0), -1e6)

    head_layers, head_colours = [skin_cov], [skin_col]
    if app.hair_style != "bald":
        hair = g.ellipsoid("hair", t)
        cov_h, _, ndotl_h, q = caster.cast(*hair, light)
        # Hairline on the hair ellipsoid's unit sphere: over the forehead, down to the ears at
        # the sides and to the nape behind.
        front = -0.4 - 0.12 * app.hairline
        # Horizontal direction around the head: 1 at the forehead, 0 at the ears, < 0 behind.
        around = q[2] / np.sqrt(q[0] * q[0] + q[2] * q[2] + 1e-6)
        limit = front + (0.22 - front) * _smoothstep(0.65, 0.35, around)
        limit = limit + (0.6 - limit) * _smoothstep(0.0, -0.4, around)
        recess = 0.07 * max(app.hairline, 0.0)  # temples recede with a high hairline
        limit = limit - recess * np.exp(-60.0 * (around - 0.62) ** 2)
        margin = limit - q[1]
        edge = np.clip(margin * np.float32(hair[2][1] * ppu / 1.2) + 0.5, 0.0, 1.0)
        # Past the skull's silhouette the hair shell is seen edge-on: keep it only well above
        # the hairline, or its grazing rim breaks into slivers.
        edge *= cranium[0] + (1.0 - cranium[0]) * _smoothstep(0.0, 0.15, margin)
        head_layers.append(cov_h * edge)
        hshade = 0.42 + 0.75 * np.clip((ndotl_h + 0.2) * np.float32(1.0 / 1.2), 0.0, 1.0)
        hshade = hshade * (1.0 + 0.08 * np.sin(70.0 * q[0] + 11.0 * q[1]))  # strands
        hair_col = hair_rgb * hshade[..., None]
        if app.hair_style == "buzz":
            hair_col = 0.5 * hair_col + 0.5 * skin_col
        head_colours.append(hair_col)

    # --- back to front -----------------------------------------------------------------------
    if app.hair_style == "long":
        # A mass of hair behind the head and neck, falling to the shoulders.
        win = _Window.of(p2["long_extent"], size)
        if not win.empty:
            cov, _, ndotl_m, qm = _Caster(camera, size, win).cast(*g.ellipsoid("mass", t), light)
            mshade = 0.3 + 0.5 * np.clip((ndotl_m + 0.2) * np.float32(1.0 / 1.2), 0.0, 1.0)
            mshade = mshade * (1.0 + 0.08 * np.sin(50.0 * qm[0]))
            _stack(img, win, cov[None], [hair_rgb * mshade[..., None]])

    torso = p2["torso"]
    win = _Window.of(np.clip(torso, -10, size + 10), size)
    if not win.empty:
        across = np.clip((win.cols() - 0.5 * (torso[0, 0] + torso[-1, 0])) / (2.0 * ppu), -1.0, 1.0)
        lam = np.clip(across * light[0] + np.sqrt(1.0 - across**2) * (0.9 * light[2]) + 0.3, 0.0, 1.3)
        cloth = np.asarray(app.clothing_rgb, np.float32) * (0.45 + 0.45 * lam)[..., None]
        covs = _masks(win, [[("poly", torso)], [("poly", p2["neckline"])]])
        _stack(img, win, covs, [cloth, skin * np.float32(0.7)])

    top, bot = p2["neck_top"], p2["neck_bottom"]
    mid = 0.5 * (top + bot[::-1])
    centre_line = 0.5 * (mid[0] + mid[1])
    mid = centre_line + 0.88 * (mid - centre_line)  # the neck narrows a little
    neck = np.stack([top[0], top[1], mid[1], bot[0], bot[1], mid[0]])
    win = _Window.of(neck, size)
    if not win.empty:
        cols = np.arange(win.c0, win.c1)
        inside = (cols >= hwin.c0) & (cols < hwin.c1)
        hang = np.full(len(cols), -1e6, np.float32)
        hang[inside] = bottom[cols[inside] - hwin.c0]
        shadow = _smoothstep(0.0, 0.45 * ppu, win.rows() - hang[None, :])
        across = np.clip((win.cols() - centre_line[0]) / (0.6 * ppu), -1.0, 1.0)
        lam = np.clip(across * light[0] + np.sqrt(1.0 - across**2) * light[2], 0.0, 1.0)
        neck_col = skin * ((0.4 + 0.3 * lam) * (0.6 + 0.4 * shadow))[..., None]
        _stack(img, win, _masks(win, [[("poly", neck)]]), [neck_col])

    ears = p2["ears"].reshape(2, 2, -1, 2)  # (side, ring/inner, points, xy)
    ear_lam = 0.55 + 0.3 * max(-light[1], 0.0)

    def draw_ears(which):
        for side in which:
            win = _Window.of(ears[side, 0], size)
            if not win.empty:
                covs = _masks(win, [[("poly", ears[side, 0])], [("poly", ears[side, 1])]])
                covs[1] *= 0.6
                _stack(img, win, covs, [skin * np.float32(ear_lam), skin * np.float32(ear_lam * 0.7)])

    facing = g.ear_facing[t]
    draw_ears([s for s in (0, 1) if facing[s] < 0.0])
    _stack(img, hwin, head_layers, head_colours)
    draw_ears([s for s in (0, 1) if facing[s] >= 0.0])

    _draw_eyes(img, g, t, p2, ppu, app, light, size)
    # Nostrils: dark ovals that open up as the head tilts back.
    win = _Window.of(lm[27:36], size, pad=4.0)
    if not win.empty:
        radii = np.array([0.036, 0.008 + 0.03 * g.nostril_view[t]]) * ppu
        shapes = [("ellipse", c, radii) for c in p2["nostrils"]]
        _stack(img, win, _masks(win, [shapes]), [skin * np.float32(0.25)])
    _draw_mouth(img, g, t, p2, ppu, app, light, skin, size)
    return _to_uint8(img)


def _draw_eyes(img, g: _ClipGeometry, t: int, p2, ppu: float, app: Appearance, light: np.ndarray, size: int) -> None:
    lm = p2["lm"]
    skin = np.asarray(app.skin_rgb, np.float32)
    win = _Window.of(np.concatenate([lm[36:48], lm[17:27]]), size, pad=0.08 * ppu + 2.0)
    if win.empty:
        return
    iris_r = 0.062 * ppu
    gaze = g.rot[t][:, 2]
    radii = iris_r * np.sqrt(np.maximum(1.0 - gaze[:2] ** 2, 0.2))  # foreshortened
    glint_off = radii * np.array([0.4 * light[0] - 0.2, -0.4])
    glint_r = np.full(2, max(iris_r * 0.18, 0.3))
    lash = max(0.024 * ppu, 0.7) * np.array([0.5, 1.0, 1.0, 0.5])  # thickest mid-lid
    crease = p2["crease"]
    widths = np.array([0.035, 0.05, 0.058, 0.062, 0.062]) * ppu
    layers = [
        [("poly", lm[36:42]), ("poly", lm[42:48])],  # sclera
        [("ellipse", c, radii) for c in p2["iris"]],
        [("ellipse", c, radii * 0.42) for c in p2["iris"]],
        [("ellipse", c + glint_off, glint_r) for c in p2["iris"]],
        [("line", crease[0:4], max(0.012 * ppu, 0.5)), ("line", crease[4:8], max(0.012 * ppu, 0.5))],
        [("line", lm[[39, 40, 41, 36]], max(0.01 * ppu, 0.4)), ("line", lm[[42, 47, 46, 45]], max(0.01 * ppu, 0.4))],
        [("poly", _stroke(lm[36:40], lash)), ("poly", _stroke(lm[42:46], lash))],
        [("poly", _stroke(lm[17:22], widths)), ("poly", _stroke(lm[22:27], widths[::-1]))],
    ]
    covs = _masks(win, layers)
    covs[1:4] *= covs[0]  # iris, pupil and glint only inside the eye opening
    covs[3] *= 0.85
    covs[4] *= 0.7
    covs[5] *= 0.5
    covs[7] *= 0.92
    sclera = _SCLERA * np.float32(0.72 + 0.2 * max(light[2], 0.0))
    iris, brow = np.asarray(app.iris_rgb, np.float32), np.asarray(app.brow_rgb, np.float32)
    colours = [sclera, iris, _PUPIL, _GLINT, skin * np.float32(0.55), skin * np.float32(0.5), _LASH, brow]
    _stack(img, win, covs, colours)


def _draw_mouth(img, g: _ClipGeometry, t: int, p2, ppu: float, app: Appearance, light, skin, size: int) -> None:
    lm = p2["lm"]
    upper_teeth, lower_teeth = p2["upper_teeth"], p2["lower_teeth"]
    win = _Window.of(np.concatenate([lm[48:68], upper_teeth, lower_teeth]), size, pad=0.13 * ppu + 2.0)
    if win.empty:
        return
    gap = float(g.gap[t])
    layers = [
        [("poly", lm[60:68])],  # mouth interior
        [("ellipse", p2["tongue"][0], np.array([0.12, 0.045]) * ppu)] if gap > 0.1 else [],
        [("poly", lower_teeth)] if gap > 0.08 else [],
        [("poly", upper_teeth)],
        [("poly", np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]]))],  # upper lip
        [("poly", np.concatenate([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]]))],  # lower lip
        [("line", lm[[60, 61, 62, 63, 64]], max(0.012 * ppu, 0.5))],  # where the lips meet
    ]
    covs = _masks(win, layers)
    covs[1:4] *= covs[0]  # tongue and teeth are seen through the opening only
    covs[1] *= np.float32(np.clip((gap - 0.1) / 0.08, 0.0, 1.0))
    covs[2] *= np.float32(np.clip((gap - 0.08) / 0.06, 0.0, 1.0))
    covs[6] *= 0.8
    lip = np.asarray(app.lip_rgb, np.float32)
    top_light = max(-light[1], 0.0)
    # The arches turn away from the camera at the sides: darker there.
    cols = win.cols()

    def arch(points):
        half = max(0.5 * np.ptp(points[:, 0]), 1.0)
        side = np.clip((cols - points[:, 0].mean()) / half, -1.0, 1.0)
        return (1.0 - 0.45 * side * side)[..., None]

    colours = [
        np.array([0.2, 0.06, 0.06], np.float32) * (0.5 + 0.5 * skin),
        lip * np.float32(0.75),
        _LOWER_TEETH * arch(lower_teeth),
        _TEETH * arch(upper_teeth),
        lip * np.float32(0.72 + 0.1 * top_light),
        lip * np.float32(0.9 + 0.2 * top_light),
        lip * np.float32(0.35),
    ]
    _stack(img, win, covs, colours)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def render_frames(
    local_points: np.ndarray,
    rotation: np.ndarray,
    translation: np.ndarray,
    appearance: Appearance,
    image_size: int,
    camera: Camera = Camera(),
) -> np.ndarray:
    """Renders a clip: face-local landmarks (T, 68, 3), R (T, 3, 3), T (T, 3) -> uint8 (T, H, W, 3).

    `local_points` are the articulated landmarks of `face.articulate` (before the pose); the pose
    is applied as in `face.apply_pose` and projected with `camera` as in `face.project`, so the
    features sit on `face.project(face.apply_pose(local_points, rotation, translation), size)`.
    """
    size = check_image_size(image_size)
    pts = np.asarray(local_points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 3):
        raise ValueError(f"local_points must have shape (T, 68, 3), got {pts.shape}")
    rot = np.asarray(rotation, dtype=np.float64)
    if rot.shape != (len(pts), 3, 3):
        raise ValueError(f"rotation must have shape ({len(pts)}, 3, 3) to match local_points, got {rot.shape}")
    tr = np.asarray(translation, dtype=np.float64)
    if tr.shape != (len(pts), 3):
        raise ValueError(f"translation must have shape ({len(pts)}, 3) to match local_points, got {tr.shape}")
    if not isinstance(appearance, Appearance):
        raise ValueError(
            f"appearance must be a render.Appearance (see sample_appearance), got {type(appearance).__name__}"
        )
    if not (np.all(np.isfinite(pts)) and np.all(np.isfinite(rot)) and np.all(np.isfinite(tr))):
        raise ValueError("local_points, rotation and translation must be finite")
    out = np.empty((len(pts), size, size, 3), np.uint8)
    if len(pts) == 0:
        return out
    geometry = _ClipGeometry(pts, rot, tr, size, camera)
    background = _background(appearance, size)
    for t in range(len(pts)):
        out[t] = _render_frame(geometry, t, appearance, size, camera, background)
    return out
