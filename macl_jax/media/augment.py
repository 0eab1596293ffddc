"""Per-frame image augmentation inside the jitted step (the SFE's RandomGray + ColorJitter).

The reference draws both augmentations independently for every frame (docs/decisions.md#per-frame-augmentation), on the
host, with torchvision. Here they are vectorised over all frames of the global batch and fused
into the training step, so the input pipeline ships uint8 frames and never touches floats.

Operations follow torchvision's float semantics on RGB in [0, 1]: brightness scales, contrast
blends with the image's mean grey level, saturation blends with the per-pixel grey level, hue
rotates the HSV hue; each result is clipped to [0, 1]. The four jitter operations run in a random
order per frame.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def to_unit(frames: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return frames.astype(jnp.float32) / 255.0


def to_signed(images: jax.Array) -> jax.Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(images: jax.Array) -> jax.Array:
    """[-1, 1] -> uint8-valued float32 [0, 255] (rounded and clipped like a saved frame)."""
    return jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0.0, 255.0)


def imagenet_normalize(frames: jax.Array, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """[0, 1] RGB -> ImageNet-standardised, in `dtype`."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return ((frames - mean) / std).astype(dtype)


def grey(frames: jax.Array) -> jax.Array:
    """(..., H, W, 3) -> (..., H, W, 1) luminance."""
    return jnp.sum(frames * jnp.asarray(_GREY, frames.dtype), axis=-1, keepdims=True)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = jnp.max(rgb, axis=-1)
    minc = jnp.min(rgb, axis=-1)
    delta = maxc - minc
    safe = jnp.where(delta > 0, delta, 1.0)
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = jnp.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    i = i.astype(jnp.int32) % 6
    r = jnp.choose(i, [v, q, p, p, t, v], mode="clip")
    g = jnp.choose(i, [t, v, v, q, p, p], mode="clip")
    b = jnp.choose(i, [p, p, t, v, v, q], mode="clip")
    return jnp.stack([r, g, b], axis=-1)


def _per_frame(x: jax.Array, frames: jax.Array) -> jax.Array:
    """Broadcasts a per-frame value (N,) against frames (N, H, W, C)."""
    return x.reshape(x.shape + (1,) * (frames.ndim - x.ndim))


def random_grey(key: jax.Array, frames: jax.Array, p: float = 0.25) -> jax.Array:
    """With probability p per frame, copy one random RGB channel into all three (a channel split)."""
    k_apply, k_channel = jax.random.split(key)
    n = frames.shape[0]
    apply = jax.random.bernoulli(k_apply, p, (n,))
    channel = jax.random.randint(k_channel, (n,), 0, 3)
    picked = jnp.take_along_axis(frames, _per_frame(channel, frames[..., :1]) * jnp.ones_like(frames[..., :1], jnp.int32), -1)
    return jnp.where(_per_frame(apply, frames), jnp.broadcast_to(picked, frames.shape), frames)


def apply_jitter(
    frames: jax.Array, brightness: jax.Array, contrast: jax.Array, saturation: jax.Array, hue: jax.Array, order: jax.Array
) -> jax.Array:
    """Applies per-frame factors (N,) in the per-frame `order` (N, 4) of operations 0..3 =
    brightness, contrast, saturation, hue to frames (N, H, W, 3) in [0, 1]."""

    def blend(x, other, f):
        return jnp.clip(_per_frame(f, x) * x + (1 - _per_frame(f, x)) * other, 0.0, 1.0)

    def op(x, which):
        if which == 0:
            return jnp.clip(x * _per_frame(brightness, x), 0.0, 1.0)
        if which == 1:
            return blend(x, jnp.mean(grey(x), axis=(-3, -2, -1), keepdims=True), contrast)
        return blend(x, grey(x), saturation)

    def hue_op(x):
        hsv = rgb_to_hsv(x)
        hsv = hsv.at[..., 0].set((hsv[..., 0] + _per_frame(hue, hsv[..., 0])) % 1.0)
        return hsv_to_rgb(hsv)

    # Each frame runs its three cheap operations before or after its single hue rotation, in its
    # own order: two passes of selects over the cheap operations around one HSV round trip,
    # instead of evaluating the HSV conversion at every position.
    hue_position = jnp.argmax(order == 3, axis=-1)

    def cheap_pass(x, before_hue: bool):
        for position in range(4):
            chosen = order[:, position]
            active = (position < hue_position) if before_hue else (position > hue_position)
            candidates = [op(x, which) for which in range(3)]
            selected = jnp.select([_per_frame(chosen, x) == which for which in range(3)], candidates, x)
            x = jnp.where(_per_frame(active & (chosen != 3), x), selected, x)
        return x

    return cheap_pass(hue_op(cheap_pass(frames, True)), False)


def color_jitter(
    key: jax.Array,
    frames: jax.Array,
    brightness: float = 0.5,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.25,
) -> jax.Array:
    """torchvision ColorJitter(b, c, s, h) drawn independently for each frame (N, H, W, 3) in [0, 1]."""
    n = frames.shape[0]
    keys = jax.random.split(key, 5)
    return apply_jitter(
        frames,
        jax.random.uniform(keys[0], (n,), minval=1 - brightness, maxval=1 + brightness),
        jax.random.uniform(keys[1], (n,), minval=1 - contrast, maxval=1 + contrast),
        jax.random.uniform(keys[2], (n,), minval=1 - saturation, maxval=1 + saturation),
        jax.random.uniform(keys[3], (n,), minval=-hue, maxval=hue),
        jnp.argsort(jax.random.uniform(keys[4], (n, 4)), axis=-1),
    )


def sfe_augment(key: jax.Array, frames: jax.Array, *, grey_p: float = 0.25, jitter: bool = True) -> jax.Array:
    """uint8 frames (..., H, W, 3) -> augmented float frames in [0, 1], every frame drawn independently."""
    shape = frames.shape
    x = to_unit(frames).reshape((-1,) + shape[-3:])
    k_grey, k_jitter = jax.random.split(key)
    if grey_p > 0:
        x = random_grey(k_grey, x, grey_p)
    if jitter:
        x = color_jitter(k_jitter, x)
    return x.reshape(shape)
