"""Landmark and head motion from speech of any length: a trained MDN run over overlapping chunks.

The reference face (the input photo's landmarks) is prepared as the training clips' reference
frames are (docs/decisions.md#d7-landmark-preprocessing: scale by the eye-corner distance, centre,
rigid alignment to the anchor),
and its pose is the anchor of the predicted relative pose. Speech is cut into chunks of
`chunk_frames` frames that overlap by `overlap` frames; the Bi-GRU sees each whole chunk, and
the overlapping predictions are cross-faded linearly, so memory and compile shapes do not depend
on the length of the audio and there is no seam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.config import ConfigError, freeze, recorded_config
from macl_jax.geometry import align_2d, normalise_scale
from macl_jax.infer.inputs import SAMPLES_PER_FRAME, Speech
from macl_jax.media import audio_features
from macl_jax.models.mdn_targets import INFERENCE_MODES
from macl_jax.train import mdn
from macl_jax.train.restore import restore_on_one_device

# Extra video frames of audio read on each side of a chunk, so every mel window of the chunk is
# computed from real samples (the 20-row window spans frames t-2..t+2).
_AUDIO_MARGIN = 3


@dataclasses.dataclass(frozen=True)
class ReferenceFace:
    """A face as the MDN's reference: pixel landmarks, their scale and offset, the aligned shape and pose."""

    landmarks: np.ndarray  # (68, 2) pixels
    aligned: np.ndarray  # (68, 2) normalised, rigidly aligned to the anchor
    angle: float
    translation: np.ndarray  # (2,)
    scale: float
    offset: np.ndarray  # (2,)


def reference_face(landmarks: np.ndarray) -> ReferenceFace:
    """The reference of one face's (68, 2) pixel landmarks (a one-frame clip in `MDNClips` terms)."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"reference_face: need finite (68, 2) landmarks, got {points.shape}")
    normalised, scale, offset = normalise_scale(points[None])
    alignment = align_2d(normalised)
    return ReferenceFace(
        points, alignment.aligned[0], float(alignment.angle[0]), np.asarray(alignment.translation[0]), float(scale), np.asarray(offset)
    )


def chunk_plan(num_frames: int, chunk_frames: int, overlap: int) -> list[tuple[int, int]]:
    """(chunk start, frames it emits) for every chunk: starts `chunk_frames - overlap` apart; the
    emitted ranges tile [0, num_frames) exactly."""
    if not 0 <= overlap < chunk_frames:
        raise ValueError(f"need 0 <= overlap < chunk_frames, got overlap={overlap}, chunk_frames={chunk_frames}")
    stride = chunk_frames - overlap
    plan, start = [], 0
    while True:
        if start + chunk_frames >= num_frames:
            plan.append((start, num_frames - start))
            return plan
        plan.append((start, stride))
        start += stride


def blend_chunks(
    predict_chunk: Callable[[int, int], np.ndarray], num_frames: int, chunk_frames: int, overlap: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (first frame, predictions) covering [0, num_frames) in order. `predict_chunk(index,
    start)` gives `chunk_frames` predictions from frame `start`; the first `overlap` of each chunk
    are cross-faded with the previous chunk's last ones."""
    weight = (np.arange(overlap) + 1) / (overlap + 1)
    tail = None
    for index, (start, emit) in enumerate(chunk_plan(num_frames, chunk_frames, overlap)):
        pred = np.array(predict_chunk(index, start), np.float32)
        if tail is not None and overlap:
            w = weight.reshape(-1, *([1] * (pred.ndim - 1)))
            pred[:overlap] = (1 - w) * tail + w * pred[:overlap]
        stride = chunk_frames - overlap
        tail = pred[stride : stride + overlap]
        yield start, pred[:emit]


def mel_windows(speech: Speech, start: int, count: int) -> np.ndarray:
    """(count, 20, 80) mel windows of video frames start .. start + count - 1 (zeros past the ends)."""
    first = start - _AUDIO_MARGIN
    audio = speech.read(first * SAMPLES_PER_FRAME, (start + count + _AUDIO_MARGIN + 1) * SAMPLES_PER_FRAME)
    mel = audio_features.log_mel(audio)
    return audio_features.windows_at(mel, np.arange(count) + _AUDIO_MARGIN)


class LandmarkPredictor:
    """A trained MDN run (`macl-jax mdn --workdir DIR`) as a landmark track generator."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        checkpoint: str = "best",
        mode: str | None = None,
        chunk_frames: int = 250,
        overlap: int = 25,
    ):
        config = recorded_config(workdir, checkpoint, stage="mdn")
        if mode is not None:
            if mode not in INFERENCE_MODES:
                raise ConfigError(f"mode {mode!r}: choose one of {', '.join(INFERENCE_MODES)}")
            config.infer.mode = mode
        self.config = freeze(config)
        self.workdir = Path(workdir)
        self.chunk_frames, self.overlap = int(chunk_frames), int(overlap)
        self.task = task = mdn.build_task(self.config, load_pretrained=False)
        self.state, self.step = restore_on_one_device(task, self.config, self.workdir)
        frozen = self.config
        self._predict = jax.jit(lambda state, batch, key: mdn.predict(task, state, batch, frozen, key)["pixels"])

    def _batch(self, face: ReferenceFace, windows: np.ndarray) -> dict[str, Any]:
        T = len(windows)
        return {
            "audio": jnp.asarray(windows[None]),
            "reference": jnp.asarray(face.aligned[None], jnp.float32),
            "landmarks": jnp.broadcast_to(jnp.asarray(face.landmarks, jnp.float32), (1, T, 68, 2)),
            "angle": jnp.full((1, T), face.angle, jnp.float32),
            "translation": jnp.broadcast_to(jnp.asarray(face.translation, jnp.float32), (1, T, 2)),
            "reference_index": jnp.zeros((1,), jnp.int32),
            "scale": jnp.asarray([face.scale], jnp.float32),
            "offset": jnp.asarray(face.offset[None], jnp.float32),
        }

    def stream(self, speech: Speech, face: ReferenceFace, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(first frame, (n, 68, 2) pixel landmarks in the reference's pixels) in order over the speech;
        `seed` draws the samples of `infer.mode=sample`."""
        base = jax.random.key(seed)

        def predict_chunk(index: int, start: int) -> np.ndarray:
            batch = self._batch(face, mel_windows(speech, start, self.chunk_frames))
            return np.asarray(self._predict(self.state, batch, jax.random.fold_in(base, index))[0])

        yield from blend_chunks(predict_chunk, speech.num_frames, self.chunk_frames, self.overlap)
