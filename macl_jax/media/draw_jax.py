"""The 68-point landmark raster (docs/decisions.md#landmark-raster) in JAX: jit-able, batched over frames, any size.

Same image as the numpy `macl_jax.media.draw.landmark_raster` (pixel-identical to OpenCV's
thickness-2 `cv2.line`), built from the same three parts per segment: the two 5-pixel end caps,
the four fixed-point DDA edges of the 2-px-wide parallelogram, and its scanline interior.
Everything runs with static shapes on 32-bit integers:

* Fixed-point products that need 64 bits (line clipping, DDA slopes) use an exact
  multiply-then-divide on unsigned 32-bit words (`mul_div_trunc`).
* The parallelogram's half-width normal `rint(65536 * d / |d|)` is read from a table computed
  once in float64 with numpy's exact expression for |dx|, |dy| <= `NORMAL_TABLE_MAX`; longer
  segments use float32, whose result can differ from float64's in the last unit (1/65536 px).
* Drawn pixels become +1/-1 marks in a per-group difference image; a cumulative sum along x
  gives each group's coverage, and the last group covering a pixel gives its colour (later
  groups overwrite earlier ones).

Exactness domain: identical to the numpy raster for landmarks within +-`COORD_LIMIT` px whose
segments span at most `NORMAL_TABLE_MAX` px per axis (all faces on canvases up to 512 px; tests
cover random and SynthTalk landmarks at 64, 128 and 256 px). Beyond `COORD_LIMIT` points are
clamped at +-4096 instead of numpy's +-16384 (int32 headroom). Landmarks are read as float32
and truncated toward zero, as `astype(int)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.media.draw import LANDMARK_GROUPS_68, _SEG_END, _SEG_LAYER, _SEG_START, _walk_order

__all__ = ["COORD_LIMIT", "NORMAL_TABLE_MAX", "landmark_raster_jax", "mul_div_trunc"]

_ONE = 1 << 16
_HALF = _ONE >> 1
COORD_LIMIT = 4096.0
NORMAL_TABLE_MAX = 512
_FILL_EVENTS = 5  # a convex quad changes edges at most 4 times; one more round ends every fill
_GROUPS = len(LANDMARK_GROUPS_68)
_PALETTE = np.array([(255, 255, 255)] + [rgb for *_, rgb in LANDMARK_GROUPS_68], np.uint8)


@functools.lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    """T[a, b] = rint(b * (65536 / sqrt(a^2 + b^2))) in float64, numpy's (and OpenCV's) expression."""
    a = np.arange(NORMAL_TABLE_MAX + 1, dtype=np.float64)
    length2 = a[:, None] ** 2 + a[None, :] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.rint(a[None, :] * (_ONE / np.sqrt(length2)))
    table[0, 0] = 0  # zero-length segments have no body
    return table.astype(np.int32)


def _sign(x: jax.Array) -> jax.Array:
    return jnp.where(x < 0, -1, 1).astype(jnp.int32)


def mul_div_trunc(a: jax.Array, b: jax.Array, c: jax.Array) -> jax.Array:
    """trunc(a * b / c) exactly for int32 a, b, c with |a| <= |c| and c != 0 (the product may need 62 bits).

    b = q c + r splits off the part that fits; floor(|a| r / |c|) is long multiplication of |a|'s
    bits by r, reduced modulo |c| after every bit (all partial sums stay below 2**32).
    """
    ua = jnp.abs(a).astype(jnp.uint32)
    ub = jnp.abs(b).astype(jnp.uint32)
    uc = jnp.abs(c).astype(jnp.uint32)
    qb, rb = ub // uc, ub % uc

    def bit_step(i, carry):
        q, r = carry
        q, r = q * 2, r * 2
        over = r >= uc
        q, r = jnp.where(over, q + 1, q), jnp.where(over, r - uc, r)
        r = jnp.where((ua >> (31 - i).astype(jnp.uint32)) & 1 == 1, r + rb, r)
        over = r >= uc
        return jnp.where(over, q + 1, q), jnp.where(over, r - uc, r)

    # A loop, not 32 unrolled copies: compile time matters more than the few microseconds.
    q, _ = jax.lax.fori_loop(0, 32, bit_step, (jnp.zeros_like(ua), jnp.zeros_like(ua)))
    magnitude = (ua * qb + q).astype(jnp.int32)
    return _sign(a) * _sign(b) * _sign(c) * magnitude


def _cdiv(a: jax.Array, b: jax.Array) -> jax.Array:
    """C division (toward zero) of int32 arrays."""
    q = jnp.abs(a) // jnp.abs(b)
    return jnp.where((a < 0) != (b < 0), -q, q)


def _outcode(x, y, right, bottom):
    return (x < 0) * 1 + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8


def _clip_fixed(x1, y1, x2, y2, width: int, height: int):
    """OpenCV's Cohen-Sutherland clip of 16.16 segments (as draw._clip_fixed, exact in int32)."""
    right, bottom = width * _ONE - 1, height * _ONE - 1
    c1, c2 = _outcode(x1, y1, right, bottom), _outcode(x2, y2, right, bottom)
    todo = ((c1 & c2) == 0) & ((c1 | c2) != 0)

    def safe(d):
        return jnp.where(d == 0, 1, d)

    step = todo & ((c1 & 12) != 0)
    edge = jnp.where(c1 < 8, 0, bottom)
    x1 = jnp.where(step, x1 + mul_div_trunc(edge - y1, x2 - x1, safe(y2 - y1)), x1)
    y1 = jnp.where(step, edge, y1)
    c1 = jnp.where(step, (x1 < 0) * 1 + (x1 > right) * 2, c1)

    step = todo & ((c2 & 12) != 0)
    edge = jnp.where(c2 < 8, 0, bottom)
    x2 = jnp.where(step, x2 + mul_div_trunc(edge - y2, x2 - x1, safe(y2 - y1)), x2)
    y2 = jnp.where(step, edge, y2)
    c2 = jnp.where(step, (x2 < 0) * 1 + (x2 > right) * 2, c2)

    todo = todo & ((c1 & c2) == 0) & ((c1 | c2) != 0)
    step = todo & (c1 != 0)
    edge = jnp.where(c1 == 1, 0, right)
    y1 = jnp.where(step, y1 + mul_div_trunc(edge - x1, y2 - y1, safe(x2 - x1)), y1)
    x1 = jnp.where(step, edge, x1)
    c1 = jnp.where(step, 0, c1)

    step = todo & (c2 != 0)
    edge = jnp.where(c2 == 1, 0, right)
    y2 = jnp.where(step, y2 + mul_div_trunc(edge - x2, y2 - y1, safe(x2 - x1)), y2)
    x2 = jnp.where(step, edge, x2)
    c2 = jnp.where(step, 0, c2)
    return (c1 | c2) == 0, x1, y1, x2, y2


def _dda_pixels(ax, ay, bx, by, valid, width: int, height: int):
    """Pixels of 1-px 8-connected fixed-point lines: (x, y, keep) of shape (..., width + 1)."""
    ok, ax, ay, bx, by = _clip_fixed(ax, ay, bx, by, width, height)
    ok = ok & valid
    x_major, ax, ay, bx, by, dx, dy = _walk_order(ax, ay, bx, by, jnp)
    major_d, minor_d = jnp.where(x_major, dx, dy), jnp.where(x_major, dy, dx)
    slope = mul_div_trunc(minor_d, jnp.full_like(minor_d, _ONE), jnp.abs(major_d) | 1)
    steps = jnp.where(ok, (major_d >> 16) + 1, 0)
    k = jnp.arange(width, dtype=jnp.int32)  # after clipping a line spans at most `width` steps
    major = jnp.where(x_major, ax, ay)[..., None]
    minor = jnp.where(x_major, ay, ax)[..., None] + _HALF + k * slope[..., None]
    along = ((major + _HALF) >> 16) + k
    across = minor >> 16
    xm = x_major[..., None]
    px = jnp.concatenate([jnp.where(xm, along, across), ((bx + _HALF) >> 16)[..., None]], axis=-1)
    py = jnp.concatenate([jnp.where(xm, across, along), ((by + _HALF) >> 16)[..., None]], axis=-1)
    keep = jnp.concatenate([k < steps[..., None], ok[..., None]], axis=-1)
    return px, py, keep


def _fill_spans(vx, vy, valid, width: int, height: int):
    """Scanline interior of convex 16.16 quads (..., 4): (row, left, right, keep) of shape (..., height).

    The event simulation of draw._fill_convex_quads with a fixed number of rounds, then one
    span per canvas row, each row taking the edge pair active there.
    """
    shape = vx.shape[:-1]
    rows_v = (vy + _HALF) >> 16
    top = jnp.argmin(vy, axis=-1).astype(jnp.int32)  # first of equal minima
    xmin, xmax = (vx.min(-1) + _HALF) >> 16, (vx.max(-1) + _HALF) >> 16
    ymin, ymax = (vy.min(-1) + _HALF) >> 16, (vy.max(-1) + _HALF) >> 16
    alive = valid & ~((xmax < 0) | (ymax < 0) | (xmin >= width) | (ymin >= height))
    ymax = jnp.minimum(ymax, height - 1)

    def at(v, i):
        return jnp.take_along_axis(v, i[..., None], axis=-1)[..., 0]

    zeros = jnp.zeros(shape, jnp.int32)
    # Chain c: (current vertex, end row, x at start row, x step, start row).
    chains = ((top, ymin, zeros, zeros, ymin), (top, ymin, zeros, zeros, ymin))

    def search(chain, direction, edges_left, alive, y):
        idx, end_row, x0, x_step, start_row = chain

        def body(_, carry):
            (idx, end_row, x0, x_step, start_row), edges_left, searching, prev, cur = carry
            available = edges_left > 0
            edges_left = jnp.where(searching, edges_left - 1, edges_left)
            searching = searching & available
            row = at(rows_v, cur)
            hit = searching & (row > y)
            span = jnp.where(hit, row - y, 1)
            xs, xe = at(vx, prev), at(vx, cur)
            chain = (
                jnp.where(hit, cur, idx),
                jnp.where(hit, row, end_row),
                jnp.where(hit, xs, x0),
                jnp.where(hit, _cdiv((xe - xs) * 2 + span, 2 * span), x_step),
                jnp.where(hit, y, start_row),
            )
            searching = searching & ~hit
            prev = jnp.where(searching, cur, prev)
            cur = jnp.where(searching, (cur + direction) % 4, cur)
            return chain, edges_left, searching, prev, cur

        searching = alive & (y >= end_row)
        carry = (chain, edges_left, searching, idx, (idx + direction) % 4)
        chain, edges_left, *_ = jax.lax.fori_loop(0, 5, body, carry)
        return chain, edges_left

    def event(carry, _):
        chains, edges_left, alive, y = carry
        first, edges_left = search(chains[0], 1, edges_left, alive, y)
        second, edges_left = search(chains[1], 3, edges_left, alive, y)
        drawing = alive & (edges_left >= 0)
        stop = jnp.minimum(jnp.minimum(first[1], second[1]), ymax + 1)
        piece = (drawing, y, stop, first[2], first[4], first[3], second[2], second[4], second[3])
        alive = drawing & (stop <= ymax)
        return ((first, second), edges_left, alive, jnp.where(alive, stop, y)), piece

    init = (chains, jnp.full(shape, 4, jnp.int32), alive, ymin)
    # Loops, not unrolled copies: they keep compilation short.
    _, pieces = jax.lax.scan(event, init, None, length=_FILL_EVENTS)
    pieces = [jnp.moveaxis(p, 0, -1) for p in pieces]
    drawing, y_from, y_to, xa0, sa, da, xb0, sb, db = pieces
    rows = jnp.arange(height, dtype=jnp.int32)  # rows outside [0, height) are never drawn
    inside = drawing[..., None, :] & (y_from[..., None, :] <= rows[:, None]) & (rows[:, None] < y_to[..., None, :])
    piece = jnp.argmax(inside, axis=-1)  # pieces cover disjoint row ranges
    keep = jnp.any(inside, axis=-1)

    def pick(v):
        return jnp.take_along_axis(v, piece, axis=-1)

    xa = pick(xa0) + (rows - pick(sa)) * pick(da)
    xb = pick(xb0) + (rows - pick(sb)) * pick(db)
    left = (jnp.minimum(xa, xb) + _HALF) >> 16
    right = (jnp.maximum(xa, xb) + _HALF) >> 16
    keep = keep & (right >= 0) & (left < width)
    left, right = jnp.maximum(left, 0), jnp.minimum(right, width - 1)
    keep = keep & (left <= right)
    return jnp.broadcast_to(rows, keep.shape), left, right, keep


def _normals(ddx: jax.Array, ddy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(nx, ny) = rint(65536 * (ddy, ddx) / |(ddx, ddy)|), exact (float64 table) for small deltas."""
    adx, ady = jnp.abs(ddx), jnp.abs(ddy)
    in_table = (adx <= NORMAL_TABLE_MAX) & (ady <= NORMAL_TABLE_MAX)
    table = jnp.asarray(_normal_table())
    i, j = jnp.minimum(adx, NORMAL_TABLE_MAX), jnp.minimum(ady, NORMAL_TABLE_MAX)
    fx, fy = ddx.astype(jnp.float32), ddy.astype(jnp.float32)
    scale = _ONE / jnp.sqrt(jnp.maximum(fx * fx + fy * fy, 1.0))
    nx = jnp.where(in_table, _sign(ddy) * table[i, j], jnp.round(fy * scale).astype(jnp.int32))
    ny = jnp.where(in_table, _sign(ddx) * table[j, i], jnp.round(fx * scale).astype(jnp.int32))
    return nx, ny


@functools.partial(jax.jit, static_argnames=("size",))
def _raster(points: jax.Array, size: int) -> jax.Array:
    """(F, 68, 2) float32 -> (F, size, size, 3) uint8."""
    frames = points.shape[0]
    p = jnp.clip(points, -COORD_LIMIT, COORD_LIMIT).astype(jnp.int32)  # truncates toward zero
    seg_start, seg_end = jnp.asarray(_SEG_START), jnp.asarray(_SEG_END)
    x0, y0 = p[:, seg_start, 0], p[:, seg_start, 1]
    x1, y1 = p[:, seg_end, 0], p[:, seg_end, 1]
    n_seg = seg_start.shape[0]
    group = jnp.broadcast_to(jnp.asarray(_SEG_LAYER, jnp.int32), (frames, n_seg))
    frame = jnp.broadcast_to(jnp.arange(frames, dtype=jnp.int32)[:, None], (frames, n_seg))

    xs, ys, ends, owners_g, owners_f, keeps = [], [], [], [], [], []

    def add(x, y, right, keep, g, f):
        xs.append(x.reshape(-1))
        ys.append(y.reshape(-1))
        ends.append(right.reshape(-1))
        keeps.append(keep.reshape(-1))
        owners_g.append(jnp.broadcast_to(g, x.shape).reshape(-1))
        owners_f.append(jnp.broadcast_to(f, x.shape).reshape(-1))

    # End caps: radius-1 filled circles (centre and 4-neighbours).
    offsets = jnp.asarray([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], jnp.int32)
    for cx, cy in ((x0, y0), (x1, y1)):
        px = cx[..., None] + offsets[:, 0]
        py = cy[..., None] + offsets[:, 1]
        add(px, py, px, jnp.ones(px.shape, bool), group[..., None], frame[..., None])

    ddx, ddy = x0 - x1, y1 - y0
    body = (ddx != 0) | (ddy != 0)
    nx, ny = _normals(ddx, ddy)
    px0, py0, px1, py1 = x0 * _ONE, y0 * _ONE, x1 * _ONE, y1 * _ONE
    vx = jnp.stack([px0 + nx, px0 - nx, px1 - nx, px1 + nx], axis=-1)
    vy = jnp.stack([py0 + ny, py0 - ny, py1 - ny, py1 + ny], axis=-1)

    # Outline: edges (v3, v0), (v0, v1), (v1, v2), (v2, v3).
    prev = jnp.asarray([3, 0, 1, 2])
    ex, ey, ekeep = _dda_pixels(vx[..., prev], vy[..., prev], vx, vy, body[..., None], size, size)
    add(ex, ey, ex, ekeep, group[..., None, None], frame[..., None, None])

    rows, left, right, fkeep = _fill_spans(vx, vy, body, size, size)
    add(left, rows, right, fkeep, group[..., None], frame[..., None])

    x, y, right = jnp.concatenate(xs), jnp.concatenate(ys), jnp.concatenate(ends)
    keep = jnp.concatenate(keeps) & (x >= 0) & (x < size) & (y >= 0) & (y < size)
    g, f = jnp.concatenate(owners_g), jnp.concatenate(owners_f)
    # Difference image per (frame, group): +1 at a run's first pixel, -1 after its last.
    width = size + 1
    base = ((f * _GROUPS + g) * size + y) * width
    dump = frames * _GROUPS * size * width  # dropped by the scatter
    starts = jnp.where(keep, base + x, dump)
    stops = jnp.where(keep, base + right + 1, dump)
    marks = jnp.zeros((frames * _GROUPS * size * width,), jnp.int32)
    marks = marks.at[starts].add(1, mode="drop").at[stops].add(-1, mode="drop")
    coverage = jnp.cumsum(marks.reshape(frames, _GROUPS, size, width), axis=-1)[..., :size] > 0
    # The last group drawn over a pixel gives its colour; 0 = white canvas.
    layer = jnp.max(coverage * jnp.arange(1, _GROUPS + 1, dtype=jnp.int32)[:, None, None], axis=1)
    return jnp.asarray(_PALETTE)[layer]


def landmark_raster_jax(landmarks: jax.Array, size: int = 256) -> jax.Array:
    """(..., 68, 2) pixel (x, y) landmarks -> uint8 (..., size, size, 3); same image as `draw.landmark_raster`.

    jit-able (`size` is static) and batched over any leading dimensions. See the module
    docstring for the exactness domain.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= 8192:
        raise ValueError(f"landmark_raster_jax: size must be an integer in [1, 8192], got {size!r}")
    landmarks = jnp.asarray(landmarks)
    if landmarks.ndim < 2 or landmarks.shape[-2:] != (68, 2):
        raise ValueError(f"landmark_raster_jax: landmarks must have shape (..., 68, 2), got {landmarks.shape}")
    if not jnp.issubdtype(landmarks.dtype, jnp.floating) and not jnp.issubdtype(landmarks.dtype, jnp.integer):
        raise ValueError(f"landmark_raster_jax: landmarks must be numeric, got dtype {landmarks.dtype}")
    batch = landmarks.shape[:-2]
    flat = landmarks.reshape(-1, 68, 2).astype(jnp.float32)
    return _raster(flat, int(size)).reshape(*batch, int(size), int(size), 3)
