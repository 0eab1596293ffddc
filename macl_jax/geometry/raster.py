"""Hard z-buffer triangle rasteriser in pure JAX (jit- and vmap-able), and vertex-attribute interpolation.

Conventions
-----------
* Vertices are (x, y, depth): x = column and y = row in pixels with pixel centres at integers,
  as everywhere in the package; the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5].
* **Larger depth is nearer.** For an orthographic view pass the coordinate that points toward
  the camera; for a pinhole view pass the inverse distance to the camera (1 / d), which is an
  affine function of the screen position over a planar triangle, so the linear z-test is exact
  (and set `perspective_correct=True` to get barycentrics of the 3-D surface point).
* A pixel is covered by a triangle when its centre lies inside the closed triangle. Each edge
  function is evaluated from the edge's lower-index vertex, so two triangles that share an edge
  compute bit-identical values of opposite sign there: a mesh has no cracks along shared edges.
  Equal depths are resolved toward the larger triangle index.
* Front-facing means (b - a) x (c - a) > 0 in these pixel coordinates (x right, y down), i.e.
  clockwise as seen on the screen. Both orientations are drawn unless `cull_backfaces`.
* Triangles with twice-area below 1e-6 px^2 (including repeated vertices), with a non-finite
  vertex, or entirely off the canvas are skipped.

Algorithm
---------
Each triangle's bounding box (clipped to the canvas) is cut into `block` x `block` pixel tiles,
and all (triangle, tile) pairs are processed `chunk` at a time in a `lax.while_loop` whose trip
count is the number of pairs over `chunk`: the work follows the covered area rather than
pixels x triangles, which is what makes many small triangles cheap. Each chunk scatter-maxes its
depths into the z-buffer and then writes its triangle index where its depth equals the updated
buffer (the max returns one of its inputs bit-exactly, so the comparison is exact); a pixel whose
depth rose in this chunk first forgets its old triangle. A final per-pixel pass recomputes
barycentrics of the winning triangle, differentiably in the vertices. Visibility itself is
discrete: no gradient flows through coverage or the depth test (the vertices are stop-gradiented
for the loop, which reverse-mode AD could not differentiate anyway). Measurements and the choice
of this algorithm over a pixels x triangles test: docs/rhm_3d_aware.md#rasteriser.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Raster", "interpolate", "rasterize"]

# Twice the area (px^2) below which a triangle counts as degenerate: barycentrics would divide by
# ~0; such a triangle covers almost no pixel centre and is skipped.
_DEGENERATE_AREA2 = 1e-6


class Raster(NamedTuple):
    """Per-pixel result of `rasterize` for an (H, W) image.

    triangle: (H, W) int32 index of the visible triangle, -1 where no triangle covers the pixel.
    barycentric: (H, W, 3) float32 weights of the triangle's three vertices (sum 1; 0 where empty).
    mask: (H, W) bool coverage.
    depth: (H, W) float32 interpolated depth (larger is nearer); -inf where empty.
    vertex_ids: (H, W, 3) int32 vertex indices of the visible triangle (0 where empty).
    """

    triangle: jax.Array
    barycentric: jax.Array
    mask: jax.Array
    depth: jax.Array
    vertex_ids: jax.Array


def _check_inputs(vertices: jax.Array, triangles: jax.Array, height: int, width: int) -> None:
    if vertices.ndim != 2 or vertices.shape[-1] != 3:
        raise ValueError(
            f"rasterize(vertices): expected (V, 3) as (x_px, y_px, depth), got shape {vertices.shape}; "
            "use jax.vmap for a batch."
        )
    if triangles.ndim != 2 or triangles.shape[-1] != 3 or triangles.shape[0] == 0:
        raise ValueError(f"rasterize(triangles): expected (F, 3) with F >= 1, got shape {triangles.shape}.")
    if not jnp.issubdtype(triangles.dtype, jnp.integer):
        raise ValueError(f"rasterize(triangles): expected integer vertex indices, got dtype {triangles.dtype}.")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"rasterize({name}): expected a positive Python int (static), got {value!r}.")
    if not isinstance(triangles, jax.core.Tracer):
        t = np.asarray(triangles)
        if t.min() < 0 or t.max() >= vertices.shape[0]:
            raise ValueError(
                f"rasterize(triangles): vertex indices must lie in [0, {vertices.shape[0]}), "
                f"got range [{t.min()}, {t.max()}]."
            )


def _edge_params(xy: jax.Array, ids: jax.Array) -> jax.Array:
    """Per edge k (opposite vertex k) of triangles xy (..., 3, 2) with vertex indices ids (..., 3):
    (start x, start y, dx, dy, sign) as (..., 3, 5), so that the edge function at a pixel is
    sign * (dx * (py - sy) - dy * (px - sx)) and e_k / (e0 + e1 + e2) is vertex k's barycentric.

    Every edge starts at its lower-index vertex (see the module docstring).
    """
    params = []
    for i, j in ((1, 2), (2, 0), (0, 1)):
        swap = ids[..., i] > ids[..., j]
        start = jnp.where(swap[..., None], xy[..., j, :], xy[..., i, :])
        end = jnp.where(swap[..., None], xy[..., i, :], xy[..., j, :])
        sign = jnp.where(swap, -1.0, 1.0).astype(xy.dtype)
        delta = end - start
        params.append(jnp.stack([start[..., 0], start[..., 1], delta[..., 0], delta[..., 1], sign], axis=-1))
    return jnp.stack(params, axis=-2)


def _edge_values(params: jax.Array, px: jax.Array, py: jax.Array) -> jax.Array:
    """Edge functions (..., 3) from `_edge_params` (..., 3, 5) at pixels px, py broadcast to (...,)."""
    sx, sy, dx, dy, sign = (params[..., k] for k in range(5))
    return sign * (dx * (py[..., None] - sy) - dy * (px[..., None] - sx))


def _area2(xy: jax.Array) -> jax.Array:
    """Twice the signed area (b - a) x (c - a) of triangles xy (..., 3, 2)."""
    a, b, c = xy[..., 0, :], xy[..., 1, :], xy[..., 2, :]
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (c[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1])


def rasterize(
    vertices: jax.Array,
    triangles: jax.Array,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    perspective_correct: bool = False,
    block: int = 4,
    chunk: int = 1024,
) -> Raster:
    """Hard z-buffer rasterisation of one mesh: vertices (V, 3) as (x_px, y_px, depth), triangles (F, 3).

    Larger depth wins. `cull_backfaces` drops triangles with (b - a) x (c - a) <= 0 on screen.
    `perspective_correct=True` declares the depth to be inverse camera distance (> 0) and returns
    barycentrics of the 3-D point (screen weights times 1/d, renormalised); otherwise barycentrics
    are screen-space (exact for orthographic views). `block` (tile side in pixels) and `chunk`
    (tiles per loop step) trade loop steps against wasted work; they do not change the result.
    For a batch, `jax.vmap(rasterize, in_axes=(0, None, None, None))` with height/width bound
    (e.g. by functools.partial); height and width must be static under jit.
    """
    vertices = jnp.asarray(vertices)
    triangles = jnp.asarray(triangles)
    _check_inputs(vertices, triangles, height, width)
    for name, value in (("block", block), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"rasterize({name}): expected a positive Python int, got {value!r}.")
    vertices = vertices.astype(jnp.float32)
    triangles = triangles.astype(jnp.int32)
    # Visibility is discrete: the loop sees stop-gradient vertices, so differentiating a caller
    # never traces (or recompiles) it; only the small per-pixel pass below is differentiated.
    cull = jnp.asarray(cull_backfaces, bool)
    frozen = jax.lax.stop_gradient(vertices)
    triangle = _visibility(frozen, triangles, cull, int(height), int(width), int(block), int(chunk))
    return _resolve(vertices, triangles, triangle, jnp.asarray(perspective_correct, bool))


# Compiled once per shape, so eager callers (tests, one-off renders) do not pay for op-by-op
# dispatch of the loop; inside a caller's jit it is inlined. The culling switch is a traced
# value: it costs a select, and one compiled program then serves both settings.
@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _visibility(
    v: jax.Array, triangles: jax.Array, cull_backfaces: jax.Array, height: int, width: int, block: int, chunk: int
) -> jax.Array:
    """(H, W) int32 index of the nearest covering triangle, -1 where none."""
    num_pixels = height * width

    corners = v[triangles]  # (F, 3, 3)
    xy, z = corners[..., :2], corners[..., 2]
    area2 = _area2(xy)
    valid = jnp.all(jnp.isfinite(corners), axis=(-1, -2)) & (jnp.abs(area2) > _DEGENERATE_AREA2)
    valid &= (area2 > 0) | ~cull_backfaces
    # Pixel-index bounding boxes; clip in float first so a huge coordinate cannot overflow int32.
    size = jnp.array([width, height], jnp.float32)
    lo = jnp.maximum(jnp.ceil(jnp.clip(jnp.min(xy, axis=1), -1.0, size)).astype(jnp.int32), 0)
    hi = jnp.minimum(jnp.floor(jnp.clip(jnp.max(xy, axis=1), -1.0, size)).astype(jnp.int32), size.astype(jnp.int32) - 1)
    extent = jnp.maximum(hi - lo + 1, 0)  # (F, 2) columns, rows
    tiles = (extent + block - 1) // block
    count = jnp.where(valid, tiles[:, 0] * tiles[:, 1], 0)
    ends = jnp.cumsum(count)
    starts = ends - count
    total = ends[-1]
    # Everything a tile needs about its triangle in one row, so the loop does one gather per tile:
    # 15 edge parameters, 3 depths / (2 x area) with the area's sign, box origin and end, tiles across.
    inv_area2 = jnp.where(valid, 1.0 / jnp.where(valid, area2, 1.0), 0.0)
    table = jnp.concatenate(
        [
            _edge_params(xy, triangles).reshape(-1, 15),
            z * inv_area2[:, None],
            jnp.sign(area2)[:, None],
            lo.astype(jnp.float32),
            hi.astype(jnp.float32),
            tiles[:, :1].astype(jnp.float32),
            starts[:, None].astype(jnp.float32),
        ],
        axis=1,
    )  # (F, 25); integers below 2**24 are exact in float32
    offsets = jnp.arange(block, dtype=jnp.float32)
    num_triangles = triangles.shape[0]

    def step(state):
        i, zbuf, tbuf = state
        item = i * chunk + jnp.arange(chunk, dtype=jnp.int32)
        live = item < total
        t = jnp.minimum(jnp.searchsorted(ends, item, side="right"), num_triangles - 1).astype(jnp.int32)
        row = table[t]  # (chunk, 25)
        local = (item - row[:, 24].astype(jnp.int32)).astype(jnp.float32)
        across = jnp.maximum(row[:, 23], 1.0)
        tile_y = jnp.floor(local / across)
        tile_x = local - tile_y * across
        r = row[:, None, None, :]
        px = r[..., 19] + tile_x[:, None, None] * block + offsets[None, None, :]  # (chunk, 1, block)
        py = r[..., 20] + tile_y[:, None, None] * block + offsets[None, :, None]  # (chunk, block, 1)
        e = _edge_values(r[..., :15].reshape(chunk, 1, 1, 3, 5), px, py)  # (chunk, block, block, 3)
        inside = (
            live[:, None, None]
            & (px <= r[..., 21])
            & (py <= r[..., 22])
            & jnp.all(r[..., 18:19] * e >= 0, axis=-1)
        )
        depth = jnp.sum(e * r[..., 15:18], axis=-1)
        index = jnp.where(inside, py.astype(jnp.int32) * width + px.astype(jnp.int32), num_pixels).reshape(-1)
        depth = jnp.where(inside, depth, -jnp.inf).reshape(-1)
        new_z = zbuf.at[index].max(depth, mode="drop")  # out-of-range index: dropped
        # A pixel whose depth rose in this chunk is now owned by one of this chunk's triangles.
        tbuf = jnp.where(new_z > zbuf, -1, tbuf)
        wins = inside.reshape(-1) & (depth == new_z.at[index].get(mode="fill", fill_value=jnp.inf))
        owner = jnp.broadcast_to(t[:, None, None], inside.shape).reshape(-1)
        tbuf = tbuf.at[jnp.where(wins, index, num_pixels)].max(owner, mode="drop")
        return i + 1, new_z, tbuf

    start = (
        jnp.zeros((), jnp.int32),
        jnp.full((num_pixels,), -jnp.inf, jnp.float32),
        jnp.full((num_pixels,), -1, jnp.int32),
    )
    _, _, tbuf = jax.lax.while_loop(lambda s: s[0] * chunk < total, step, start)
    return tbuf.reshape(height, width)


@jax.jit
def _resolve(vertices: jax.Array, triangles: jax.Array, triangle: jax.Array, perspective_correct: jax.Array) -> Raster:
    """Barycentrics and depth of the visible triangle at every pixel, differentiable in the vertices."""
    height, width = triangle.shape
    mask = triangle >= 0
    ids = triangles[jnp.maximum(triangle, 0)]  # (H, W, 3)
    pix = vertices[ids]  # (H, W, 3, 3)
    py, px = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij")
    e = _edge_values(_edge_params(pix[..., :2], ids), px, py)
    area = _area2(pix[..., :2])
    safe = jnp.where(mask, area, 1.0)[..., None]
    # Coverage was decided above; clipping the recomputed weights keeps an on-edge pixel's
    # interpolation convex when the float rounding of this pass differs in the last bit.
    bary = jnp.clip(e / safe, 0.0, None)
    bary = bary / jnp.maximum(jnp.sum(bary, axis=-1, keepdims=True), 1e-12)
    weighted = bary * pix[..., 2]
    depth = jnp.sum(weighted, axis=-1)
    # The denominator is 1 when the switch is off, so the unused branch stays finite (a NaN there
    # would still poison the gradient through the select).
    total = jnp.where(perspective_correct & mask, jnp.sum(weighted, axis=-1), 1.0)
    bary = jnp.where(perspective_correct, weighted / total[..., None], bary)
    bary = jnp.where(mask[..., None], bary, 0.0)
    depth = jnp.where(mask, depth, -jnp.inf)
    ids = jnp.where(mask[..., None], ids, 0)
    return Raster(triangle=triangle, barycentric=bary, mask=mask, depth=depth, vertex_ids=ids)


def interpolate(attributes: jax.Array, raster: Raster) -> jax.Array:
    """Per-pixel interpolation of vertex attributes (V, C) -> (H, W, C); zeros where nothing is drawn."""
    attributes = jnp.asarray(attributes)
    if attributes.ndim != 2:
        raise ValueError(f"interpolate(attributes): expected (V, C), got shape {attributes.shape}.")
    values = attributes[raster.vertex_ids]  # (H, W, 3, C)
    out = jnp.einsum("hwk,hwkc->hwc", raster.barycentric.astype(values.dtype), values)
    return jnp.where(raster.mask[..., None], out, 0).astype(attributes.dtype)
