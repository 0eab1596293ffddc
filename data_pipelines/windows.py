"""Windowing of schema clips into the training examples of each model (numpy only).

Each transform maps one clip (see data_pipelines.schema) and a numpy Generator to one example. They
run inside grain, possibly in worker processes: no JAX here. With `train=False` the window position
is fixed (the first valid one) so evaluation sees the same examples every time.

| transform | example | used by |
|---|---|---|
| `SFEWindows` | S steps, stride 3: mel windows (S, 20, 80) and 5-frame stacks (S, 5, H, W, 3) | MACL speech feature extractor |
| `MDNClips` | 64 frames -> T = 60 targets: mel windows (T, 20, 80), landmarks, aligned landmarks, in-plane angle and translation, closed-mouth reference, 3-D pose | landmark MDN, head-motion models |
| `RendererPairs` | (target, reference) frames of one clip, the target's landmarks and their raster | image-to-image renderers |
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
from PIL import Image

from data_pipelines.schema import as_text
from macl_jax.geometry import align_2d, closed_mouth_frame, normalise_scale, savgol_smooth
from macl_jax.media import audio_features
from macl_jax.media.draw import landmark_raster

# Frames on each side of a window centre covered by the 20-row (5-frame) mel window.
_CONTEXT = 2


def decode_frames(encoded: np.ndarray, indices: np.ndarray | list[int], clip_id: str = "", size: int = 0) -> np.ndarray:
    """Decodes the JPEG frames at `indices`: uint8 (len(indices), H, W, 3); resized to size x size
    when `size` > 0 (JPEG's reduced-scale decoding first, then an area-averaging resize)."""
    out = []
    for i in np.asarray(indices).reshape(-1):
        try:
            with Image.open(io.BytesIO(encoded[int(i)])) as image:
                if size > 0 and image.size != (size, size):
                    image.draft("RGB", (size, size))
                    image = image.convert("RGB").resize((size, size), Image.BOX)
                out.append(np.asarray(image.convert("RGB")))
        except Exception as error:  # PIL raises several types for corrupt data
            raise ValueError(
                f"clip {clip_id or '?'}: frame {int(i)} is not a readable image ({error}); rebuild or "
                "re-preprocess this clip (the dataset files may be corrupt)"
            ) from error
    return np.stack(out)


def _clip_frames(example: dict[str, Any]) -> int:
    return int(len(example["frames"]))


def _audio_features(example: dict[str, Any], num_frames: int) -> np.ndarray:
    sample_rate = int(example["sample_rate"])
    fps = float(example["fps"])
    if sample_rate != audio_features.SAMPLE_RATE or fps != 25:
        raise ValueError(
            f"clip {as_text(example['clip_id'])}: {sample_rate} Hz audio at {fps} fps; the pipelines expect "
            f"{audio_features.SAMPLE_RATE} Hz and 25 fps (re-run the dataset's preprocessing)"
        )
    audio = np.asarray(example["audio"], dtype=np.float32)
    need = num_frames * sample_rate // 25
    if len(audio) < need:
        audio = np.pad(audio, (0, need - len(audio)))
    return audio_features.log_mel(audio)


def _check_length(example: dict[str, Any], needed: int, what: str) -> int:
    num_frames = _clip_frames(example)
    if num_frames < needed:
        raise ValueError(
            f"clip {as_text(example['clip_id'])} has {num_frames} frames; {what} needs at least {needed}. "
            "Filter short clips when preparing the dataset or shorten the window in the config."
        )
    return num_frames


def _labels(example: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        "speaker": np.int32(example["speaker"]),
        "emotion": np.int32(example["emotion"]),
        "intensity": np.int32(example["intensity"]),
    }


@dataclasses.dataclass(frozen=True)
class SFEWindows:
    """`num_steps` centres `stride` frames apart; per centre its mel window and 5 frames.

    With `frames=False` only the audio is windowed (speaker verification, audio-only datasets).
    """

    num_steps: int = 20
    stride: int = 3
    train: bool = True
    frames: bool = True
    # > 0: frames are decoded at this size (e.g. 64 px from a 128 px build for a small visual branch).
    frame_size: int = 0

    @property
    def frames_needed(self) -> int:
        return self.stride * (self.num_steps - 1) + 2 * _CONTEXT + 1

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(example, self.frames_needed, f"an SFE window of {self.num_steps} steps")
        last_start = num_frames - self.frames_needed
        start = int(rng.integers(0, last_start + 1)) if self.train else 0
        centres = start + _CONTEXT + self.stride * np.arange(self.num_steps)
        mel = _audio_features(example, num_frames)
        out = {"audio": audio_features.windows_at(mel, centres), "centres": centres.astype(np.int32), **_labels(example)}
        if not self.frames:
            return out
        frame_index = centres[:, None] + np.arange(-_CONTEXT, _CONTEXT + 1)[None, :]
        # Neighbouring 5-frame stacks overlap when stride < 5: decode each frame once.
        unique, inverse = np.unique(frame_index, return_inverse=True)
        frames = decode_frames(example["frames"], unique, as_text(example["clip_id"]), self.frame_size)[inverse.reshape(-1)]
        out["frames"] = frames.reshape(self.num_steps, 2 * _CONTEXT + 1, *frames.shape[1:])
        return out


@dataclasses.dataclass(frozen=True)
class MDNClips:
    """A `clip_frames`-frame clip giving T = clip_frames - 4 per-frame targets (MACL: 64 -> 60).

    Landmarks follow docs/decisions.md#d7-landmark-preprocessing: Savitzky-Golay (7, 3) over the
    whole clip, a clip-constant scale
    and offset, then per-frame 2-D rigid alignment of the 9 T-shape points to the anchor. The
    reference is the aligned frame with the smallest inner-lip area (a closed mouth).
    """

    clip_frames: int = 64
    smooth: bool = True
    train: bool = True
    # False: landmarks and pose only (no mel features), e.g. for landmark statistics.
    audio: bool = True

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(example, self.clip_frames, f"an MDN clip of {self.clip_frames} frames")
        start = int(rng.integers(0, num_frames - self.clip_frames + 1)) if self.train else 0
        centres = np.arange(start + _CONTEXT, start + self.clip_frames - _CONTEXT)
        landmarks = np.asarray(example["landmarks_2d"], dtype=np.float64)
        if self.smooth:
            landmarks = savgol_smooth(landmarks, window=7, order=3, axis=0)
        window = landmarks[centres]
        normalised, scale, offset = normalise_scale(window)
        alignment = align_2d(normalised)
        reference_index = closed_mouth_frame(alignment.aligned, method="area")
        out = {
            "landmarks": window.astype(np.float32),
            "aligned": alignment.aligned.astype(np.float32),
            "angle": alignment.angle.astype(np.float32),
            "translation": alignment.translation.astype(np.float32),
            "reference": alignment.aligned[reference_index].astype(np.float32),
            "reference_index": np.int32(reference_index),
            "scale": np.float32(scale),
            "offset": offset.astype(np.float32),
            "head_rotation": np.asarray(example["head_rotation"], np.float32)[centres],
            "head_translation": np.asarray(example["head_translation"], np.float32)[centres],
            "centres": centres.astype(np.int32),
            **_labels(example),
        }
        if self.audio:
            out["audio"] = audio_features.windows_at(_audio_features(example, num_frames), centres)
        return out


@dataclasses.dataclass(frozen=True)
class RendererPairs:
    """A target frame and a reference frame of the same clip (docs/decisions.md#d11-renderer-pairs), plus the target's raster.

    The reference is drawn at least `min_gap` frames from the target, so the renderer cannot copy
    it (MakeItTalk's random pairs could be near-identical). Evaluation pairs frame 0 with the
    middle frame.
    """

    min_gap: int = 8
    raster: bool = True

    train: bool = True

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames = _check_length(example, self.min_gap + 1, f"a renderer pair {self.min_gap} frames apart")
        if self.train:
            target = int(rng.integers(0, num_frames))
            allowed = np.flatnonzero(np.abs(np.arange(num_frames) - target) >= self.min_gap)
            reference = int(rng.choice(allowed))
        else:
            target, reference = num_frames // 2, 0
        target_frame, reference_frame = decode_frames(example["frames"], [target, reference], as_text(example["clip_id"]))
        landmarks = np.asarray(example["landmarks_2d"], np.float32)[target]
        out = {
            "target": target_frame,
            "reference": reference_frame,
            "target_landmarks": landmarks,
            "reference_landmarks": np.asarray(example["landmarks_2d"], np.float32)[reference],
            **_labels(example),
        }
        if self.raster:
            out["raster"] = landmark_raster(landmarks, size=target_frame.shape[0])
        return out


@dataclasses.dataclass(frozen=True)
class KeepFields:
    """A window transform that keeps only the fields a trainer reads (less to batch and transfer)."""

    window: Any
    fields: tuple[str, ...]

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = self.window(example, rng)
        return {k: out[k] for k in self.fields}


class EvaluationWindows:
    """Random-access view of a clip source through a window transform, at the transform's fixed
    (train=False) positions: the same examples at every evaluation, for any batch or device count."""

    def __init__(self, clips: Any, transform: Any):
        window = getattr(transform, "window", transform)  # field filters wrap a window
        if getattr(window, "train", False):
            raise ValueError(f"evaluation needs a deterministic window: {type(window).__name__}(train=False)")
        self._clips, self._transform = clips, transform

    def __len__(self) -> int:
        return len(self._clips)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._transform(self._clips[int(index)], np.random.default_rng(0))


WINDOWS = {"sfe": SFEWindows, "mdn": MDNClips, "renderer": RendererPairs}


def make_window(kind: str, **kwargs: Any):
    """The transform of a model family by name: sfe | mdn | renderer."""
    if kind not in WINDOWS:
        raise ValueError(f"unknown window type {kind!r}; choose one of {', '.join(WINDOWS)}")
    return WINDOWS[kind](**kwargs)
