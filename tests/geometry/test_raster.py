"""The z-buffer rasteriser against a plain float64 numpy per-pixel loop (closed point-in-triangle
test: a pixel centre on an edge counts as inside), plus occlusion, interpolation, batching and
degenerate input. Edge convention of the reference: a pixel centre within 1e-3 px of a triangle's
edge (or a depth tie within 1e-4) may go either way in float32, so those pixels are left out."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from macl_jax.geometry.raster import interpolate, rasterize

# Most tests draw on one canvas with the mesh padded to one size (extra degenerate triangles draw
# nothing), so the rasteriser compiles once for them rather than once per test.
H, W, V_PAD, F_PAD = 20, 24, 384, 128


def _pad(vertices, triangles):
    v = np.zeros((V_PAD, 3), np.float32)
    v[: len(vertices)] = vertices
    t = np.zeros((F_PAD, 3), np.int32)
    t[: len(triangles)] = triangles
    return v, t


def _draw(vertices, triangles, **kwargs):
    return rasterize(*_pad(vertices, triangles), H, W, **kwargs)


def _reference(vertices, triangles, height, width, cull=False):
    """(H, W) winning triangle (-1 empty) and (H, W) bool 'ambiguous' by brute force in float64."""
    v = np.asarray(vertices, np.float64)
    rows, cols = np.mgrid[:height, :width].astype(np.float64)
    best = np.full((height, width), -np.inf)
    second = np.full((height, width), -np.inf)
    owner = np.full((height, width), -1)
    ambiguous = np.zeros((height, width), bool)
    for k, (i, j, l) in enumerate(triangles):
        a, b, c = v[i], v[j], v[l]
        area2 = (b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])
        if abs(area2) <= 1e-6 or (cull and area2 <= 0):
            continue
        dist = []
        weights = []
        for p, q, opposite in ((b, c, 0), (c, a, 1), (a, b, 2)):
            e = (q[0] - p[0]) * (rows - p[1]) - (q[1] - p[1]) * (cols - p[0])
            weights.append(e / area2)
            dist.append(np.abs(e) / np.hypot(q[0] - p[0], q[1] - p[1]))
        inside = np.all(np.stack(weights) >= 0, axis=0)
        ambiguous |= np.min(np.stack(dist), axis=0) < 1e-3
        depth = weights[0] * a[2] + weights[1] * b[2] + weights[2] * c[2]
        depth = np.where(inside, depth, -np.inf)
        wins = depth >= best  # ties toward the larger index, as documented
        second = np.where(wins, best, np.maximum(second, depth))
        owner = np.where(wins & inside, k, owner)
        best = np.where(wins, depth, best)
    ambiguous |= np.isfinite(second) & np.isfinite(best) & (best - np.where(np.isfinite(second), second, 0) < 1e-4)
    return owner, ambiguous


def _random_soup(rng, n, size, spread):
    centres = rng.uniform(-0.2 * size, 1.2 * size, (n, 1, 2))
    xy = centres + rng.normal(0, spread, (n, 3, 2))
    z = rng.uniform(-1, 1, (n, 3, 1))
    return np.concatenate([xy, z], -1).reshape(-1, 3).astype(np.float32), np.arange(3 * n, dtype=np.int32).reshape(n, 3)


@pytest.mark.parametrize("seed, count, spread", [(0, 120, 2.0), (1, 40, 6.0), (2, 20, 15.0)])
def test_matches_brute_force_on_overlapping_triangles(seed, count, spread):
    rng = np.random.default_rng(seed)
    vertices, triangles = _random_soup(rng, count, W, spread)
    owner, ambiguous = _reference(vertices, triangles, H, W)
    raster = _draw(vertices, triangles)
    got = np.asarray(raster.triangle)
    assert (owner >= 0).sum() > 50  # the soup does cover the canvas
    np.testing.assert_array_equal(got[~ambiguous], owner[~ambiguous])
    np.testing.assert_array_equal(np.asarray(raster.mask), got >= 0)


def test_a_mesh_with_edges_through_pixel_centres_has_no_cracks():
    # A 6x6 grid of integer-cornered quads split along both diagonal directions: many pixel
    # centres lie exactly on shared edges, where a careless edge test leaves holes.
    n, step = 6, 3
    xs = np.arange(n + 1) * step + 1.0
    gx, gy = np.meshgrid(xs, xs)
    vertices = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], -1).astype(np.float32)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    tris = []
    for r in range(n):
        for c in range(n):
            a, b, d, e = idx[r, c], idx[r, c + 1], idx[r + 1, c], idx[r + 1, c + 1]
            tris += [(a, b, e), (a, e, d)] if (r + c) % 2 else [(a, b, d), (b, e, d)]
    raster = _draw(vertices, np.array(tris, np.int32))
    inside = np.zeros((H, W), bool)
    inside[1 : 1 + n * step + 1, 1 : 1 + n * step + 1] = True
    np.testing.assert_array_equal(np.asarray(raster.mask), inside)


def test_the_nearer_triangle_wins_in_either_order():
    # Larger depth is nearer. Triangle A (depth 1) and B (depth 0) overlap in the middle.
    a = [[2.0, 2.0, 1.0], [14.0, 3.0, 1.0], [3.0, 14.0, 1.0]]
    b = [[13.0, 13.0, 0.0], [4.0, 12.0, 0.0], [12.0, 4.0, 0.0]]
    for order in ([a, b], [b, a]):
        vertices = np.array(order, np.float32).reshape(6, 3)
        raster = _draw(vertices, np.array([[0, 1, 2], [3, 4, 5]], np.int32))
        near = 0 if order[0] is a else 1
        overlap = (7, 7)  # inside both
        assert int(raster.triangle[overlap]) == near
        assert float(raster.depth[overlap]) == pytest.approx(1.0)
    # A tilted pair that crosses: each wins where it is nearer.
    cross = np.array([[0, 0, 0], [15, 0, 1], [0, 15, 0], [0, 0, 1], [15, 0, 0], [0, 15, 1]], np.float32)
    raster = _draw(cross, np.array([[0, 1, 2], [3, 4, 5]], np.int32))
    t = np.asarray(raster.triangle)
    assert t[2, 10] == 0 and t[10, 2] == 1  # depth x / 15 against 1 - x / 15


def test_barycentrics_reproduce_vertex_attributes():
    rng = np.random.default_rng(3)
    vertices, triangles = _pad(*_random_soup(rng, 12, W, 6.0))
    raster = rasterize(vertices, triangles, H, W)
    mask = np.asarray(raster.mask)
    bary = np.asarray(raster.barycentric)
    assert mask.sum() > 100
    np.testing.assert_allclose(bary[mask].sum(-1), 1.0, atol=1e-6)
    assert bary.min() >= 0 and np.all(bary[~mask] == 0)
    pos = np.asarray(interpolate(vertices, raster))
    rows, cols = np.mgrid[:H, :W]
    np.testing.assert_allclose(pos[..., 0][mask], cols[mask], atol=2e-3)
    np.testing.assert_allclose(pos[..., 1][mask], rows[mask], atol=2e-3)
    np.testing.assert_allclose(pos[..., 2][mask], np.asarray(raster.depth)[mask], atol=1e-5)
    assert np.all(pos[~mask] == 0) and np.all(np.isneginf(np.asarray(raster.depth)[~mask]))


def test_perspective_correct_barycentrics_give_the_3d_surface_point():
    # A tilted triangle seen through a pinhole (camera at z = 10 looking down -z, focal 40 px).
    world = np.array([[-3.0, -2.0, 2.0], [3.0, -1.0, -2.0], [-1.0, 3.0, -1.0]], np.float32)
    inv = 1.0 / (10.0 - world[:, 2])
    screen = np.stack([11 + 30 * world[:, 0] * inv, 10 + 30 * world[:, 1] * inv, inv], -1)
    tri = np.array([[0, 1, 2]], np.int32)
    raster = _draw(screen, tri, perspective_correct=True)
    mask = np.asarray(raster.mask)
    point = np.asarray(interpolate(_pad(world, tri)[0], raster))[mask]
    back = np.stack([11, 10]) + 30 * point[:, :2] / (10.0 - point[:, 2:])
    rows, cols = np.mgrid[:H, :W]
    assert mask.sum() > 100
    np.testing.assert_allclose(back, np.stack([cols[mask], rows[mask]], -1), atol=2e-3)
    # Screen-space weights miss by far more, so the check above can fail.
    flat = np.asarray(interpolate(_pad(world, tri)[0], _draw(screen, tri)))[mask]
    assert np.abs(np.stack([11, 10]) + 30 * flat[:, :2] / (10.0 - flat[:, 2:]) - back).max() > 0.05


def test_jit_and_vmap_over_a_batch_equal_per_sample_calls():
    rng = np.random.default_rng(4)
    _, triangles = _pad(*_random_soup(rng, 10, W, 5.0))
    batch = np.stack([_pad(*_random_soup(rng, 10, W, 5.0))[0] for _ in range(3)])
    fn = jax.jit(jax.vmap(functools.partial(rasterize, triangles=triangles, height=H, width=W)))
    out = fn(jnp.asarray(batch))
    for b in range(3):
        one = rasterize(batch[b], triangles, H, W)
        np.testing.assert_array_equal(np.asarray(out.triangle[b]), np.asarray(one.triangle))
        np.testing.assert_array_equal(np.asarray(out.vertex_ids[b]), np.asarray(one.vertex_ids))
        # Floats may differ in the last bit where the batched program fuses differently.
        np.testing.assert_allclose(np.asarray(out.barycentric[b]), np.asarray(one.barycentric), atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.depth[b]), np.asarray(one.depth), atol=1e-6)


def test_tile_and_chunk_sizes_do_not_change_the_result():
    rng = np.random.default_rng(5)
    vertices, triangles = _random_soup(rng, 15, W, 10.0)
    base = np.asarray(_draw(vertices, triangles).triangle)
    for block, chunk in ((3, 5),):  # many loop steps, tiles that do not divide the boxes
        np.testing.assert_array_equal(np.asarray(_draw(vertices, triangles, block=block, chunk=chunk).triangle), base)


def test_degenerate_off_canvas_and_non_finite_triangles_draw_nothing():
    vertices = np.array(
        [
            [2, 2, 0], [10, 2, 0], [2, 2, 0],  # repeated vertex
            [1, 1, 0], [5, 5, 0], [9, 9, 0],  # collinear
            [-30, -30, 0], [-20, -30, 0], [-25, -20, 0],  # off the canvas
            [40, 3, 0], [50, 3, 0], [45, 9, 0],  # off to the right
            [3, 3, 0], [np.nan, 5, 0], [5, 9, 0],  # NaN
        ],
        np.float32,
    )  # fmt: skip
    triangles = np.arange(15, dtype=np.int32).reshape(5, 3)
    raster = _draw(vertices, triangles)
    assert not np.asarray(raster.mask)[:, :W].any()
    assert np.all(np.asarray(raster.triangle) == -1) and np.isfinite(np.asarray(raster.barycentric)).all()
    # A triangle far larger than the canvas covers all of it.
    big = np.array([[-1e4, -1e4, 0], [1e4, -1e4, 0], [0, 1e4, 0]], np.float32)
    assert np.asarray(_draw(big, np.array([[0, 1, 2]], np.int32)).mask).all()


def test_backface_culling_drops_counter_clockwise_triangles_on_screen():
    front = np.array([[1, 1, 0], [10, 1, 0], [1, 10, 0]], np.float32)  # (b - a) x (c - a) > 0
    back = front[[0, 2, 1]]
    tri = np.array([[0, 1, 2]], np.int32)
    assert np.asarray(_draw(front, tri, cull_backfaces=True).mask).sum() > 20
    assert not np.asarray(_draw(back, tri, cull_backfaces=True).mask).any()
    assert np.asarray(_draw(back, tri).mask).sum() > 20


def test_barycentrics_are_differentiable_in_the_vertices():
    vertices, tri = _pad(np.array([[1.0, 1.0, 0.0], [14.0, 2.0, 0.0], [3.0, 13.0, 0.0]]), np.array([[0, 1, 2]]))
    vertices = jnp.asarray(vertices)
    colour = jnp.zeros((V_PAD, 1)).at[:3, 0].set(jnp.array([0.0, 1.0, 2.0]))

    def pixel(v):
        return interpolate(colour, rasterize(v, tri, H, W))[5, 6, 0]

    grad = np.asarray(jax.grad(pixel)(vertices))
    eps = 1e-2
    for idx in ((1, 0), (2, 1), (0, 0)):
        d = jnp.zeros_like(vertices).at[idx].set(eps)
        fd = (pixel(vertices + d) - pixel(vertices - d)) / (2 * eps)
        assert grad[idx] == pytest.approx(float(fd), rel=1e-2, abs=1e-4)
    assert abs(grad[1, 0]) > 1e-3  # the pixel's value does depend on the vertex


def test_bad_inputs_are_refused():
    v = np.zeros((4, 3), np.float32)
    tri = np.array([[0, 1, 2]], np.int32)
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        rasterize(np.zeros((2, 4, 3)), tri, 8, 8)
    with pytest.raises(ValueError, match=r"\(F, 3\)"):
        rasterize(v, np.zeros((0, 3), np.int32), 8, 8)
    with pytest.raises(ValueError, match="integer"):
        rasterize(v, tri.astype(np.float32), 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        rasterize(v, np.array([[0, 1, 4]], np.int32), 8, 8)
    with pytest.raises(ValueError, match="height"):
        rasterize(v, tri, 0, 8)
    with pytest.raises(ValueError, match="width"):
        rasterize(v, tri, 8, 8.0)
    with pytest.raises(ValueError, match=r"\(V, C\)"):
        interpolate(np.zeros(4), _draw(v, tri))
