"""Bilinear resampling of images (PyTorch's `grid_sample`, bilinear, border padding) and flow warping.

Coordinates: pixel (x, y) = (column, row) with pixel centres at integers, as elsewhere in the
package. `grid_sample` takes normalised coordinates in [-1, 1] with `align_corners=True`
semantics (-1 is the centre of the first pixel, +1 the centre of the last), which is how the
Rhythmic Head Motion generator builds its sampling grid; `warp` takes a flow in pixels.
Outside the image the sample point is clamped to the border (padding "border"), so a warp never
pulls in zeros. Written as four gathers with clamped indices: differentiable in the image and in
the sampling positions (the gradient is that of the bilinear interpolant, zero across the clamp).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["bilinear_sample", "grid_sample", "warp"]


def bilinear_sample(image: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Sample `image` (B, H, W, C) at pixel positions x, y (B, h, w) -> (B, h, w, C).

    Border padding: positions are clamped to [0, W - 1] x [0, H - 1] before interpolating.
    """
    if image.ndim != 4:
        raise ValueError(f"bilinear_sample: image must be (B, H, W, C), got shape {image.shape}")
    _, h, w, _ = image.shape
    x = jnp.clip(x.astype(jnp.float32), 0.0, w - 1)
    y = jnp.clip(y.astype(jnp.float32), 0.0, h - 1)
    x0 = jnp.floor(x)
    y0 = jnp.floor(y)
    fx, fy = x - x0, y - y0
    x0i = x0.astype(jnp.int32)
    y0i = y0.astype(jnp.int32)
    x1i = jnp.minimum(x0i + 1, w - 1)
    y1i = jnp.minimum(y0i + 1, h - 1)

    def gather(img, yi, xi):  # per sample: (H, W, C), (h, w) -> (h, w, C)
        return img[yi, xi]

    take = jax.vmap(gather)
    top = take(image, y0i, x0i) * (1 - fx)[..., None] + take(image, y0i, x1i) * fx[..., None]
    bottom = take(image, y1i, x0i) * (1 - fx)[..., None] + take(image, y1i, x1i) * fx[..., None]
    out = top * (1 - fy)[..., None] + bottom * fy[..., None]
    return out.astype(image.dtype)


def grid_sample(image: jax.Array, grid: jax.Array) -> jax.Array:
    """`torch.nn.functional.grid_sample(mode="bilinear", padding_mode="border", align_corners=True)`.

    image (B, H, W, C); grid (B, h, w, 2) holding normalised (x, y) in [-1, 1] -> (B, h, w, C).
    """
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid_sample: grid must be (B, h, w, 2), got shape {grid.shape}")
    _, h, w, _ = image.shape
    x = (grid[..., 0].astype(jnp.float32) + 1.0) * 0.5 * (w - 1)
    y = (grid[..., 1].astype(jnp.float32) + 1.0) * 0.5 * (h - 1)
    return bilinear_sample(image, x, y)


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
    """Backward warp: out[b, i, j] = image[b] at (j + flow[b, i, j, 0], i + flow[b, i, j, 1]).

    image (B, H, W, C), flow (B, H, W, 2) in pixels (dx, dy), border padding.
    """
    if flow.shape[:3] != image.shape[:3] or flow.shape[-1] != 2:
        raise ValueError(f"warp: flow must be (B, H, W, 2) matching image {image.shape[:3]}, got {flow.shape}")
    _, h, w, _ = image.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    return bilinear_sample(image, cols[None] + flow[..., 0], rows[None] + flow[..., 1])
