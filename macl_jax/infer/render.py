"""Frames from landmarks: the trained landmark-to-image renderer, or the photo warped.

`model`: a `macl-jax renderer` run draws each frame's landmark raster and renders it with the
reference photo (MACL stage 3). It works on faces from the domain it was trained on.
`warp`: the photo itself is warped from its own landmarks to each frame's (piecewise-affine, with
the opened mouth painted), so any real photo gives a plausible video without a photo-trained
renderer.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.synthtalk.specs import parse_name
from macl_jax.config import freeze, recorded_config
from macl_jax.infer.warp import WarpRenderer
from macl_jax.media.augment import to_uint8
from macl_jax.media.draw_jax import landmark_raster_jax
from macl_jax.train import renderer
from macl_jax.train.restore import restore_on_one_device

# Frames rendered per call: one compiled shape whatever the video's length.
FRAME_BATCH = 16


def frame_size(config) -> int:
    """Side of the frames a renderer run was trained on."""
    if config.data.dataset == "synthtalk":
        return parse_name(config.data.variant).image_size
    return 256  # the real-data preprocessing's crop (data_pipelines.real.preprocess)


def _batched(render, landmarks: np.ndarray) -> np.ndarray:
    """Calls `render` on FRAME_BATCH frames at a time (the last batch padded) and joins the results."""
    out = []
    for first in range(0, len(landmarks), FRAME_BATCH):
        chunk = landmarks[first : first + FRAME_BATCH]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], FRAME_BATCH - len(chunk), 0)])
        out.append(np.asarray(render(jnp.asarray(padded, jnp.float32)))[: len(chunk)])
    return np.concatenate(out)


class ModelRenderer:
    """A trained `renderer` run bound to one reference photo (already cropped to `size`)."""

    def __init__(self, workdir: str | Path, checkpoint: str = "best"):
        self.config = freeze(recorded_config(workdir, checkpoint, stage="renderer"))
        self.size = frame_size(self.config)
        task = renderer.build_task(self.config)
        self.state, self.step = restore_on_one_device(task, self.config, workdir)
        size = self.size

        def render(state, landmarks, reference):
            batch = {"raster": landmark_raster_jax(landmarks, size), "reference": jnp.broadcast_to(reference, (len(landmarks), *reference.shape))}
            return to_uint8(task.predict(state, batch)).astype(jnp.uint8)

        self._render = jax.jit(render)
        self._reference = None

    def bind(self, photo: np.ndarray) -> "ModelRenderer":
        if photo.shape != (self.size, self.size, 3):
            raise ValueError(f"the reference photo must be cropped to {self.size} px, got {photo.shape}")
        self._reference = jnp.asarray(photo)
        return self

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        if self._reference is None:
            raise RuntimeError("bind(photo) before rendering")
        return _batched(lambda lm: self._render(self.state, lm, self._reference), landmarks)


class WarpFrames:
    """The photo warped to each frame's landmarks (`macl_jax.infer.warp.WarpRenderer`), batched."""

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray):
        self.size = int(photo.shape[0])
        self._warp = WarpRenderer(photo, landmarks)

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        return _batched(self._warp, landmarks)
