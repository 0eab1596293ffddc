"""What the landmark MDN reads from a batch, what it regresses, and how its outputs become landmarks.

A batch holds the fields of `FIELDS` (`data_pipelines.windows.MDNClips`): mel windows, the
landmarks in pixels with the clip's scale and offset, the aligned landmarks with their in-plane
angle and offset (docs/decisions.md#d7-landmark-preprocessing) and the closed-mouth reference
frame. From it come the model's inputs (`speech_input`, `reference_input`,
`reference_pose_input`) and the regression target (`target`). The way back: `select` picks one
output vector per frame from the mixture (docs/decisions.md#d9-inference-modes),
`to_normalised_landmarks` undoes the alignment and re-anchors the pose, `to_pixels` undoes the
clip's normalisation, and `smooth_time` applies the optional Savitzky-Golay smoothing.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.geometry import dealign_2d, denormalise_scale, savgol_smooth
from macl_jax.losses import mdn_nll
from macl_jax.models.mdn import GROUPS, LANDMARK_DIMS, NUM_POINTS, MDNSizes

FIELDS = ("audio", "landmarks", "aligned", "angle", "translation", "reference", "reference_index", "scale", "offset")
INFERENCE_MODES = ("max_alpha", "mean", "sample")


def speech_input(batch: dict, config: Any, dtype: Any) -> jax.Array:
    """The mel windows the speech branch sees: the clip's own, or, for the speech-blind control
    (`model.speech_input=other_clip`), those of the next clip in the batch. The control sees real
    speech with the statistics of the data but no relation to the face it predicts, so it can
    learn only what the reference face and the training set tell (at best the mean mouth)."""
    audio = batch["audio"].astype(dtype)
    return jnp.roll(audio, 1, axis=0) if config.model.speech_input == "other_clip" else audio


def reference_pose(batch: dict) -> tuple[jax.Array, jax.Array]:
    """(angle (B,), offset (B, 2)) of each clip's reference frame."""
    rows = jnp.arange(batch["angle"].shape[0])
    ref = batch["reference_index"]
    return batch["angle"][rows, ref], batch["translation"][rows, ref]


def normalised_landmarks(batch: dict) -> jax.Array:
    """(B, T, 68, 2) landmarks in clip-normalised units (before the per-frame alignment)."""
    return batch["landmarks"] / batch["scale"][:, None, None, None] - batch["offset"][:, None, None, :]


def reference_input(batch: dict, regression: str) -> jax.Array:
    """The reference face the model sees: aligned (f_tt) or as it is in the clip, pose included (f_a)."""
    if regression == "tt":
        return batch["reference"]
    return normalised_landmarks(batch)[jnp.arange(batch["landmarks"].shape[0]), batch["reference_index"]]


def reference_pose_input(batch: dict, sizes: MDNSizes) -> jax.Array | None:
    """(B, 3) = (theta, t_x, t_y) of the reference frame for a model that conditions on it, else None."""
    if not sizes.reference_pose:
        return None
    angle, offset = reference_pose(batch)
    return jnp.concatenate([angle[:, None], offset], axis=-1).astype(jnp.float32)


def target(batch: dict, regression: str, relative_pose: bool = True) -> jax.Array:
    """(B, T, D) regression target in normalised units: [aligned | angle | offset] (f_tt) or the
    scale-normalised landmarks (f_a). With `relative_pose` the angle and offset are relative to
    the reference frame's (docs/decisions.md#d8-relative-pose: the pose is anchored on the reference face)."""
    B, T = batch["aligned"].shape[:2]
    if regression == "tt":
        angle, offset = batch["angle"], batch["translation"]
        if relative_pose:
            ref_angle, ref_offset = reference_pose(batch)
            angle, offset = angle - ref_angle[:, None], offset - ref_offset[:, None]
        return mdn_nll.mdn_target(batch["aligned"], angle, offset)
    return normalised_landmarks(batch).reshape(B, T, LANDMARK_DIMS).astype(jnp.float32)


def to_normalised_landmarks(vec: jax.Array, regression: str, batch: dict | None = None) -> jax.Array:
    """(B, T, [M,] D) output vectors -> (..., 68, 2) landmarks in clip-normalised units (f_tt:
    de-aligned, with the reference frame's pose added back when `batch` is given)."""
    points = vec[..., :LANDMARK_DIMS].reshape(*vec.shape[:-1], NUM_POINTS, 2)
    if regression != "tt":
        return points
    angle, offset = vec[..., LANDMARK_DIMS], vec[..., LANDMARK_DIMS + 1 : LANDMARK_DIMS + 3]
    if batch is not None:
        ref_angle, ref_offset = reference_pose(batch)
        extra = (1,) * (angle.ndim - 1)
        angle = angle + ref_angle.reshape(-1, *extra)
        offset = offset + ref_offset.reshape(-1, *extra, 2)
    return dealign_2d(points, angle, offset)


def to_pixels(normalised: jax.Array, batch: dict) -> jax.Array:
    """(B, T, [M,] 68, 2) normalised -> pixels of the stored frames (the clip's scale and offset,
    docs/decisions.md#d8-relative-pose)."""
    extra = normalised.ndim - 4
    scale = batch["scale"].reshape(-1, *([1] * extra))
    offset = batch["offset"].reshape(-1, *([1] * extra), 2)
    if extra:
        moved = jnp.moveaxis(normalised, 1, -3)  # time next to the points for denormalise_scale
        return jnp.moveaxis(denormalise_scale(moved, scale, offset), -3, 1)
    return denormalise_scale(normalised, scale, offset)


@functools.lru_cache(maxsize=8)
def savgol_matrix(length: int, window: int, order: int) -> np.ndarray:
    """(T, T) matrix S with S @ x = Savitzky-Golay(window, order) of x along time (mode 'interp')."""
    return savgol_smooth(np.eye(length), window=window, order=order, axis=0).astype(np.float32)


def smooth_time(x: jax.Array, config: Any) -> jax.Array:
    """Savitzky-Golay along axis 1 (time) of (B, T, ...) on device, if `infer.smooth`."""
    ic = config.infer
    T = x.shape[1]
    if not ic.smooth or T < ic.smooth_window:
        return x
    s = jnp.asarray(savgol_matrix(T, ic.smooth_window, ic.smooth_order))
    return jnp.einsum("st,bt...->bs...", s, x)


def sigmas(out: dict, config: Any) -> tuple[jax.Array, str, tuple]:
    """(sigma, covariance, groups) of the exact likelihood for the model's sigma layout."""
    sizes = MDNSizes.from_config(config.model)
    sigma = mdn_nll.sigma_from_raw(out["sigma_raw"], config.loss.sigma_activation)
    groups = GROUPS[sizes.regression]
    if sizes.sigma == "diagonal":
        return sigma, "diagonal", groups
    if sizes.sigma == "shared":
        return sigma, "isotropic", (("all", 0, sizes.dims),)
    return sigma, "isotropic", groups


def select(out: dict, config: Any, mode: str, key: jax.Array | None = None) -> jax.Array:
    """One output vector per frame (B, T, D): the highest-weight component, the mixture mean or a
    draw (docs/decisions.md#d9-inference-modes)."""
    if mode == "max_alpha":
        return mdn_nll.best_component(out["mu"], out["logits"])
    if mode == "mean":
        return mdn_nll.mixture_mean(out["mu"], out["logits"])
    sigma, covariance, groups = sigmas(out, config)
    return mdn_nll.sample_mixture(key if key is not None else jax.random.key(0), out["mu"], out["logits"], sigma, groups, covariance)
