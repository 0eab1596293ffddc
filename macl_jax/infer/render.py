"""Frames from landmarks: a trained generator, or the photo warped.

`model`: a `macl-jax renderer` run draws each frame's landmark raster and renders it with the
reference photo (MACL stage 3). It works on faces from the domain it was trained on.
`rhm`: a `macl-jax rhm` run (the Rhythmic Head Motion generator) warps the photo and its face mesh
re-posed to each frame's head pose, and paints what the warp cannot give (docs/rhm_3d_aware.md#one-photo).
`warp`: the photo itself is warped from its own landmarks to each frame's (piecewise-affine, with
the opened mouth painted), so any real photo gives a plausible video without a photo-trained
renderer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.real.preprocess import lift_landmarks
from data_pipelines.synthtalk.specs import parse_name
from data_pipelines.windows import box_mask, mouth_box
from macl_jax.config import freeze, recorded_config
from macl_jax.evals.rhm import generator_sizes
from macl_jax.geometry.camera import Orthographic, project_at_pose
from macl_jax.infer.warp import WarpRenderer
from macl_jax.media.augment import to_uint8
from macl_jax.media.draw_jax import landmark_raster_jax
from macl_jax.media.face_edges import face_edge_map
from macl_jax.train import renderer, rhm
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


class OnePhotoInputs:
    """The RHM generator's inputs (`macl_jax.evals.rhm.FIELDS`) from one photo and a landmark track.

    The photo (cropped to `size`, with its 68 landmarks) stands in for every one of the
    generator's K references and is the warping reference (its mouth box blacked out with
    `mask_mouth`). Its landmarks are lifted to 3-D with the depth of the mean face fitted to them
    (`lift_landmarks`), each frame's head pose is the same fit to that frame's landmarks, and the
    render camera is orthographic in the crop's pixels (docs/rhm_3d_aware.md#one-photo).
    """

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray, num_refs: int, mask_mouth: bool = True):
        size = int(photo.shape[0])
        if photo.shape != (size, size, 3) or photo.dtype != np.uint8:
            raise ValueError(f"the reference photo must be a square uint8 RGB crop, got {photo.shape} {photo.dtype}")
        landmarks = np.asarray(landmarks, np.float64)
        self.size = size
        posed, rotation, translation = lift_landmarks(landmarks[None])
        self.reference_pose = posed[0], rotation[0], translation[0]
        warp_image = np.array(photo)
        if mask_mouth:
            warp_image[box_mask(mouth_box(landmarks, size), size)[..., 0] == 1] = 0
        k = int(num_refs)
        self.fixed = {
            "ref_images": np.repeat(photo[None], k, 0),
            "ref_maps": np.repeat(face_edge_map(landmarks, size)[None, ..., None], k, 0),
            "target_image": np.zeros_like(photo),  # not read by the generator
            "warp_ref": np.int32(0),
            "warp_ref_image": warp_image,
            "ref_landmarks_3d": np.repeat(posed.astype(np.float32), k, 0),
            "ref_rotation": np.repeat(rotation.astype(np.float32), k, 0),
            "ref_translation": np.repeat(translation.astype(np.float32), k, 0),
            "ref_transform": np.eye(2, 3, dtype=np.float32),
            "target_transform": np.eye(2, 3, dtype=np.float32),
        }

    def __call__(self, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        """The batch for frames with these (n, 68, 2) crop-pixel landmarks."""
        size, n = self.size, len(landmarks)
        landmarks = np.asarray(landmarks, np.float64)
        _, rotation, translation = lift_landmarks(landmarks)  # each frame's head pose
        posed, r_ref, t_ref = self.reference_pose
        ani = np.stack([project_at_pose(posed, (r_ref, t_ref), (r, t), Orthographic()) for r, t in zip(rotation, translation)])
        per_frame = {
            "ani_landmarks": ani.astype(np.float32),  # where the render puts the photo's landmarks
            "target_map": face_edge_map(landmarks, size)[..., None],
            "ani_map": face_edge_map(ani, size)[..., None],
            "target_mouth_mask": box_mask(mouth_box(landmarks, size), size),
            "target_rotation": rotation.astype(np.float32),
            "target_translation": translation.astype(np.float32),
        }
        fixed = {key: np.broadcast_to(value, (n, *np.shape(value))) for key, value in self.fixed.items()}
        return {**fixed, **per_frame}


def rhm_predictor(task: Any) -> Any:
    """jitted (state, batch) -> uint8 frames of an RHM task, its camera replaced by the one-photo
    orthographic camera."""
    task = dataclasses.replace(task, camera=Orthographic())

    def render(state, batch):
        return to_uint8(task.predict(state, batch)).astype(jnp.uint8)

    return jax.jit(render)


class RHMRenderer:
    """A trained `rhm` run bound to one photo (already cropped to `size`) and its 68 landmarks
    (`OnePhotoInputs`)."""

    def __init__(self, workdir: str | Path, checkpoint: str = "best"):
        config = recorded_config(workdir, checkpoint, stage="rhm")
        config.loss.vgg = 0.0  # the perceptual loss's network is not needed to generate
        self.config = freeze(config)
        self.size = int(self.config.data.size) or frame_size(self.config)
        self.num_refs = generator_sizes(self.config).num_refs
        task = rhm.build_task(self.config)
        self.state, self.step = restore_on_one_device(task, self.config, workdir)
        self._render = rhm_predictor(task)
        self.inputs: OnePhotoInputs | None = None

    def bind(self, photo: np.ndarray, landmarks: np.ndarray) -> "RHMRenderer":
        if photo.shape != (self.size, self.size, 3):
            raise ValueError(f"the reference photo must be cropped to {self.size} px, got {photo.shape}")
        self.inputs = OnePhotoInputs(photo, landmarks, self.num_refs, bool(self.config.data.mask_mouth))
        return self

    def batch(self, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        """The generator's inputs for frames with these (n, 68, 2) crop-pixel landmarks."""
        if self.inputs is None:
            raise RuntimeError("bind(photo, landmarks) before rendering")
        return self.inputs(landmarks)

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        return _batched(lambda lm: self._render(self.state, self.batch(np.asarray(lm, np.float64))), landmarks)
