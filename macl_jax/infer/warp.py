"""The warp renderer: a real photo animated by piecewise-affine warping to predicted landmarks.

A photo and its 68 landmarks, plus fixed points on the image border, are triangulated once.
Each output frame moves the landmarks to that frame's (predicted) positions and pulls every
output pixel from the photo through the affine map of the target triangle containing it, so a
real photo and real speech give a plausible video without a photo-trained renderer. Photos
usually show a closed mouth, whose inner-lip polygon has almost no area: warping alone would
stretch lip texture into the opening, so the opened part of the mouth is painted dark, with a
band of teeth under the upper lip.

Coordinates are (x, y) = (column, row) in pixels, with pixel centres at integers (as skimage).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import Delaunay, QhullError

from macl_jax.geometry.mouth import INNER_LIP_INDICES, INNER_LIP_PAIRS

__all__ = [
    "WarpRenderer",
    "border_points",
    "mouth_interior_mask",
    "piecewise_affine_warp",
    "triangulate",
]

# Twice the area (px^2) below which a target triangle counts as collapsed: its barycentric
# coordinates would divide by ~0, so it is never chosen over a proper one (and its map stays finite).
_DEGENERATE_DET = 1e-6
# Teeth hang from the middle of the upper inner lip; leaving out the corners (60, 64) tapers
# the band toward them, as teeth recede there.
_UPPER_TEETH_LINE = (61, 62, 63)
# Mouth painting, in units of the face width (jaw points 0..16): the paint fades in over this
# much extra opening, and the teeth band is this thick (but never more than a fraction of the
# opening, so a slightly open mouth stays dark).
_OPEN_RAMP = 0.06
_TEETH_BAND = 0.05
_TEETH_MAX_FRACTION = 0.35


def border_points(size: int, per_side: int = 4) -> np.ndarray:
    """(4 * per_side, 2) float32 points evenly spaced around the border of a size x size image.

    Corners are at 0 and size - 1 (pixel centres); each side holds its first corner and
    per_side - 1 points after it, clockwise from (0, 0), so no point repeats.
    """
    if size < 2 or per_side < 1:
        raise ValueError(f"border_points: need size >= 2 and per_side >= 1, got size={size}, per_side={per_side}.")
    last = float(size - 1)
    t = np.arange(per_side, dtype=np.float64) * (last / per_side)
    zero, full = np.zeros_like(t), np.full_like(t, last)
    sides = [(t, zero), (full, t), (last - t, full), (zero, last - t)]
    return np.concatenate([np.stack(side, axis=-1) for side in sides]).astype(np.float32)


def triangulate(points: np.ndarray) -> np.ndarray:
    """(K, 3) int32 Delaunay triangles of (P, 2) points.

    Raises ValueError for fewer than 3 points, non-finite points or all points on one line.
    Coincident points are left out of every triangle (scipy keeps one of them only).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"triangulate(points): expected shape (P, 2), got {pts.shape}.")
    if len(pts) < 3:
        raise ValueError(f"triangulate(points): need at least 3 points, got {len(pts)}.")
    if not np.isfinite(pts).all():
        raise ValueError("triangulate(points): points contain NaN or Inf.")
    spread = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
    if spread[1] <= 1e-9 * max(spread[0], np.finfo(np.float64).tiny):
        raise ValueError("triangulate(points): all points lie on one line (or coincide); no triangle has area.")
    try:
        simplices = Delaunay(pts).simplices
    except QhullError as error:
        raise ValueError(f"triangulate(points): Delaunay triangulation failed: {error}") from error
    return simplices.astype(np.int32)


def _triangle_maps(source: jax.Array, target: jax.Array, triangles: jax.Array) -> tuple[jax.Array, ...]:
    """Per target triangle: first vertex a, (p - a) -> barycentric (l1, l2), a validity flag,
    and the displacement to the source as d0 + slope @ (p - a)."""
    corners = target[triangles]  # (K, 3, 2)
    # Displacements rather than source positions: an unmoved triangle maps p to p exactly,
    # and a translated one to p + d exactly, without cancellation in float32.
    moves = (source - target)[triangles]
    a = corners[:, 0]
    e1, e2 = corners[:, 1] - a, corners[:, 2] - a
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    valid = jnp.abs(det) > _DEGENERATE_DET
    inv_det = jnp.where(valid, 1.0 / jnp.where(valid, det, 1.0), 0.0)
    to_bary = jnp.stack(
        [jnp.stack([e2[:, 1], -e2[:, 0]], -1), jnp.stack([-e1[:, 1], e1[:, 0]], -1)], axis=-2
    ) * inv_det[:, None, None]
    d0 = moves[:, 0]
    slope = jnp.stack([moves[:, 1] - d0, moves[:, 2] - d0], axis=-1) @ to_bary  # (K, 2, 2)
    return a, to_bary, valid, d0, slope


def _source_positions(maps: tuple[jax.Array, ...], pixels: jax.Array) -> jax.Array:
    """(N, 2) output pixels -> (N, 2) source positions under one frame's triangle maps."""
    a, to_bary, valid, d0, slope = maps
    px, py = pixels[:, 0], pixels[:, 1]

    # The containing triangle has all barycentric coordinates >= 0, and no other triangle can
    # beat it; outside every triangle, the one whose worst coordinate is least negative is the
    # nearest, and its affine map is extrapolated. A loop over triangles with a running best
    # keeps memory at O(N) (no (N, K) array) and every step a vectorisable elementwise pass.
    def visit(k, best):
        best_score, best_index = best
        qx, qy = px - a[k, 0], py - a[k, 1]
        l1 = to_bary[k, 0, 0] * qx + to_bary[k, 0, 1] * qy
        l2 = to_bary[k, 1, 0] * qx + to_bary[k, 1, 1] * qy
        score = jnp.where(valid[k], jnp.minimum(jnp.minimum(l1, l2), 1.0 - l1 - l2), -jnp.inf)
        better = score > best_score
        return jnp.where(better, score, best_score), jnp.where(better, k, best_index)

    start = (jnp.full(px.shape, -jnp.inf, jnp.float32), jnp.zeros(px.shape, jnp.int32))
    _, best = jax.lax.fori_loop(0, a.shape[0], visit, start, unroll=4)
    q = pixels - a[best]
    return pixels + d0[best] + jnp.einsum("nij,nj->ni", slope[best], q)


def _bilinear(image: jax.Array, xy: jax.Array) -> jax.Array:
    """Bilinear samples of an (H, W, C) image at (N, 2) positions, clamped to the edge pixels."""
    h, w, c = image.shape
    flat = image.reshape(h * w, c)
    x = jnp.clip(xy[:, 0], 0.0, w - 1.0)
    y = jnp.clip(xy[:, 1], 0.0, h - 1.0)
    x0f, y0f = jnp.floor(x), jnp.floor(y)
    fx, fy = (x - x0f)[:, None], (y - y0f)[:, None]
    x0, y0 = x0f.astype(jnp.int32), y0f.astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    top = flat[y0 * w + x0] * (1.0 - fx) + flat[y0 * w + x1] * fx
    bottom = flat[y1 * w + x0] * (1.0 - fx) + flat[y1 * w + x1] * fx
    return top * (1.0 - fy) + bottom * fy


def piecewise_affine_warp(image: jax.Array, source: jax.Array, target: jax.Array, triangles: jax.Array) -> jax.Array:
    """Warps an (H, W, C) image so that `source` points move to `target` points.

    source (P, 2), target (..., P, 2) in pixels (x, y), sharing the topology `triangles` (K, 3).
    Each output pixel takes the affine map of the target triangle containing it (outside all
    triangles, the nearest one's, extrapolated) to the source image, sampled bilinearly with
    edge clamping. Returns (..., H, W, C) float32. Collapsed target triangles are skipped, so
    degenerate targets give finite output. Frames are warped one after another, each with
    O(H * W) working memory, so memory does not grow with the batch or the number of triangles.
    """
    image = jnp.asarray(image, jnp.float32)
    source = jnp.asarray(source, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    triangles = jnp.asarray(triangles, jnp.int32)
    if image.ndim != 3:
        raise ValueError(f"piecewise_affine_warp(image): expected (H, W, C), got {image.shape}.")
    if source.ndim != 2 or source.shape[-1] != 2 or target.shape[-2:] != source.shape:
        raise ValueError(
            f"piecewise_affine_warp: expected source (P, 2) and target (..., P, 2), got {source.shape} and {target.shape}."
        )
    if triangles.ndim != 2 or triangles.shape[-1] != 3 or triangles.shape[0] == 0:
        raise ValueError(f"piecewise_affine_warp(triangles): expected (K, 3) with K >= 1, got {triangles.shape}.")
    h, w, c = image.shape
    batch = target.shape[:-2]
    frames = target.reshape(-1, *source.shape)

    index = jnp.arange(h * w)
    pixels = jnp.stack([index % w, index // w], axis=-1).astype(jnp.float32)

    def warp_frame(frame_target: jax.Array) -> jax.Array:
        maps = _triangle_maps(source, frame_target, triangles)
        return _bilinear(image, _source_positions(maps, pixels)).reshape(h, w, c)

    out = jax.lax.map(warp_frame, frames)
    return out.reshape(*batch, h, w, c)


def _pixel_grid(height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """x and y of every pixel centre, each (H, W) float32."""
    py, px = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
    return px, py


def _segment_distance(px: jax.Array, py: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Distance from pixel grids (H, W) to segments a -> b given as (..., 2): (..., H, W)."""
    ax, ay = a[..., 0, None, None], a[..., 1, None, None]
    ex, ey = b[..., 0, None, None] - ax, b[..., 1, None, None] - ay
    qx, qy = px - ax, py - ay
    t = jnp.clip((qx * ex + qy * ey) / jnp.maximum(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
    return jnp.sqrt((qx - t * ex) ** 2 + (qy - t * ey) ** 2)


def _polyline_distance(points: jax.Array, px: jax.Array, py: jax.Array) -> jax.Array:
    """Distance from pixel grids (H, W) to an open polyline (..., V, 2): (..., H, W)."""
    # One segment at a time: memory stays (..., H, W) rather than (..., H, W, V).
    distance = _segment_distance(px, py, points[..., 0, :], points[..., 1, :])
    for i in range(1, points.shape[-2] - 1):
        distance = jnp.minimum(distance, _segment_distance(px, py, points[..., i, :], points[..., i + 1, :]))
    return distance


def mouth_interior_mask(landmarks: jax.Array, height: int, width: int) -> jax.Array:
    """(..., 68, 2) iBUG-68 landmarks -> (..., H, W) float32 soft mask of the inner-lip polygon 60..67.

    Inside/outside by winding number (the polygon may be concave); the edge ramps from 0 to 1
    over one pixel across the boundary (0.5 + signed distance, clipped), which anti-aliases it.
    """
    landmarks = jnp.asarray(landmarks, jnp.float32)
    if landmarks.ndim < 2 or landmarks.shape[-2:] != (68, 2):
        raise ValueError(f"mouth_interior_mask(landmarks): expected (..., 68, 2), got {landmarks.shape}.")
    poly = landmarks[..., list(INNER_LIP_INDICES), :]
    px, py = _pixel_grid(height, width)
    n = poly.shape[-2]
    winding = jnp.zeros(poly.shape[:-2] + (height, width), jnp.int32)
    distance = jnp.full(poly.shape[:-2] + (height, width), jnp.inf, jnp.float32)
    for i in range(n):
        a, b = poly[..., i, :], poly[..., (i + 1) % n, :]
        ax, ay = a[..., 0, None, None], a[..., 1, None, None]
        bx, by = b[..., 0, None, None], b[..., 1, None, None]
        left = (bx - ax) * (py - ay) - (px - ax) * (by - ay)
        # Half-open crossings (y_a <= y < y_b) count each vertex once.
        up = (ay <= py) & (by > py) & (left > 0)
        down = (ay > py) & (by <= py) & (left < 0)
        winding = winding + up.astype(jnp.int32) - down.astype(jnp.int32)
        distance = jnp.minimum(distance, _segment_distance(px, py, a, b))
    signed = jnp.where(winding != 0, distance, -distance)
    return jnp.clip(0.5 + signed, 0.0, 1.0)


def _inner_lip_opening(landmarks: jax.Array) -> jax.Array:
    """Mean distance between facing upper and lower inner-lip points: (..., 68, 2) -> (...,)."""
    upper = landmarks[..., [p for p, _ in INNER_LIP_PAIRS], :]
    lower = landmarks[..., [q for _, q in INNER_LIP_PAIRS], :]
    return jnp.mean(jnp.linalg.norm(upper - lower, axis=-1), axis=-1)


def _face_width(landmarks: jax.Array) -> jax.Array:
    """Distance between the jaw ends (points 0 and 16): the scale of the face, (..., 68, 2) -> (...,)."""
    return jnp.linalg.norm(landmarks[..., 16, :] - landmarks[..., 0, :], axis=-1)


def _paint_mouth(
    frames: jax.Array, landmarks: jax.Array, photo_opening: jax.Array, mouth_colour: jax.Array, teeth_colour: jax.Array
) -> jax.Array:
    """Blends the opened part of each frame's inner mouth toward dark, with teeth under the upper lip.

    frames (F, H, W, 3) float in [0, 255]; landmarks (F, 68, 2); photo_opening is the photo's
    inner-lip opening divided by its face width, so a target at another scale compares fairly.
    """
    h, w = frames.shape[-3:-1]
    width = jnp.maximum(_face_width(landmarks), 1.0)
    opening = _inner_lip_opening(landmarks)
    extra = opening - photo_opening * width
    ramp = jnp.clip(extra / (_OPEN_RAMP * width), 0.0, 1.0)
    weight = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no kink when the mouth starts to open
    mask = mouth_interior_mask(landmarks, h, w)
    px, py = _pixel_grid(h, w)
    upper_lip = _polyline_distance(landmarks[:, list(_UPPER_TEETH_LINE), :], px, py)
    band = jnp.minimum(_TEETH_BAND * width, _TEETH_MAX_FRACTION * opening)[:, None, None]
    teeth = jnp.clip(0.5 + band - upper_lip, 0.0, 1.0)[..., None]
    colour = mouth_colour + teeth * (teeth_colour - mouth_colour)
    alpha = (weight[:, None, None] * mask)[..., None]
    return frames + alpha * (colour - frames)


@jax.jit
def _render(
    image: jax.Array,
    source: jax.Array,
    triangles: jax.Array,
    border: jax.Array,
    landmarks: jax.Array,
    photo_opening: jax.Array,
    mouth_colour: jax.Array,
    teeth_colour: jax.Array,
) -> jax.Array:
    """Warp, mouth painting and rounding of (F, 68, 2) target landmarks: (F, S, S, 3) uint8."""

    # Frame by frame: working memory stays that of one float frame, whatever F is.
    def render_frame(frame_landmarks: jax.Array) -> jax.Array:
        target = jnp.concatenate([frame_landmarks, border], axis=0)
        frame = piecewise_affine_warp(image, source, target, triangles)
        frame = _paint_mouth(frame[None], frame_landmarks[None], photo_opening, mouth_colour, teeth_colour)[0]
        return jnp.clip(jnp.round(frame), 0, 255).astype(jnp.uint8)

    return jax.lax.map(render_frame, landmarks)


def _topology_points(control: np.ndarray) -> np.ndarray:
    """Control points as triangulated: facing inner-lip points at least 1 px apart.

    A closed mouth often has coincident upper and lower inner-lip points (dlib predicts integer
    pixels). Delaunay would keep only one of each pair, and opening the mouth would then drag
    the upper lip down with the lower. Only the topology uses these positions; the warp uses
    the real ones, where the triangles between the lips are merely thin.
    """
    points = control.astype(np.float64).copy()
    for upper, lower in INNER_LIP_PAIRS:
        gap = points[lower, 1] - points[upper, 1]
        if gap < 1.0:
            middle = 0.5 * (points[lower, 1] + points[upper, 1])
            points[upper, 1], points[lower, 1] = middle - 0.5, middle + 0.5
    return points


class WarpRenderer:
    """Animates one photo: warps it from its own landmarks to each frame's landmarks and paints the inner mouth."""

    def __init__(
        self,
        photo: np.ndarray,
        landmarks: np.ndarray,
        per_side: int = 4,
        mouth_colour: tuple[float, float, float] = (40, 12, 14),
        teeth_colour: tuple[float, float, float] = (225, 220, 210),
    ):
        """photo: uint8 (S, S, 3), a square crop around the face; landmarks: its (68, 2) iBUG-68 points in pixels."""
        photo = np.asarray(photo)
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3 or photo.shape[0] != photo.shape[1]:
            raise ValueError(f"WarpRenderer(photo): expected uint8 (S, S, 3), got {photo.dtype} {photo.shape}.")
        points = np.asarray(landmarks, dtype=np.float32)
        if points.shape != (68, 2) or not np.isfinite(points).all():
            raise ValueError(f"WarpRenderer(landmarks): expected finite (68, 2) points, got shape {points.shape}.")
        self.photo = photo
        self.size = photo.shape[0]
        self.landmarks = points
        self.border = border_points(self.size, per_side)
        self.source = np.concatenate([points, self.border])
        self.triangles = triangulate(_topology_points(self.source))
        unused = np.setdiff1d(np.arange(len(self.source)), self.triangles)
        if unused.size:
            raise ValueError(f"WarpRenderer(landmarks): points {unused.tolist()} coincide with others and cannot be warped.")
        width = max(float(np.linalg.norm(points[16] - points[0])), 1.0)
        self._photo_opening = jnp.float32(float(_inner_lip_opening(jnp.asarray(points))) / width)
        self._image = jnp.asarray(photo, jnp.float32)
        self._mouth_colour = jnp.asarray(mouth_colour, jnp.float32)
        self._teeth_colour = jnp.asarray(teeth_colour, jnp.float32)

    def __call__(self, landmarks: np.ndarray | jax.Array) -> np.ndarray:
        """(F, 68, 2) target landmarks in the photo's pixel frame -> uint8 (F, S, S, 3) frames."""
        landmarks = jnp.asarray(landmarks, jnp.float32)
        if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
            raise ValueError(f"WarpRenderer: expected (F, 68, 2) landmarks, got {landmarks.shape}.")
        frames = _render(
            self._image,
            jnp.asarray(self.source),
            jnp.asarray(self.triangles),
            jnp.asarray(self.border),
            landmarks,
            self._photo_opening,
            self._mouth_colour,
            self._teeth_colour,
        )
        return np.asarray(frames)
