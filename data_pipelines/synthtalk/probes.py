"""Linear probes that check what a talking-head dataset teaches (used by tests and benchmarks).

- `lip_and_pose_probe`: ridge regression from the MACL 20x80 mel window of each frame to the
  mouth opening and to the head yaw, fitted on training speakers and scored (R^2) on unseen
  speakers. A good dataset has lips predictable from audio and head motion much less so (the
  same speech admits many head motions).
- `speaker_probe`: nearest-centroid speaker identification from each clip's mean log-mel, on
  held-out clips of seen speakers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from macl_jax.geometry import align_2d, normalise_scale, rotation_to_euler
from macl_jax.media import audio_features


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap |p66 - p62| over the eye-corner distance |p45 - p36|, per frame (scale-free)."""
    gap = np.linalg.norm(landmarks[..., 66, :] - landmarks[..., 62, :], axis=-1)
    eyes = np.linalg.norm(landmarks[..., 45, :] - landmarks[..., 36, :], axis=-1)
    return gap / eyes


@dataclasses.dataclass(frozen=True)
class ProbeData:
    windows: np.ndarray  # (N, 20 * 80) mel windows, one per frame
    mouth: np.ndarray  # (N,)
    yaw: np.ndarray  # (N,) degrees
    speaker: np.ndarray  # (N,)


def frame_probe_data(examples: Iterable[dict[str, Any]], frame_stride: int = 1) -> ProbeData:
    """Per-frame (mel window, mouth opening, yaw) of schema examples; frames 2..T-3 (full windows)."""
    windows, mouth, yaw, speaker = [], [], [], []
    for ex in examples:
        num_frames = len(ex["frames"])
        frames = np.arange(2, num_frames - 2, frame_stride)
        mel = audio_features.log_mel(np.asarray(ex["audio"], np.float32))
        windows.append(audio_features.windows_at(mel, frames).reshape(len(frames), -1))
        landmarks = np.asarray(ex["landmarks_2d"], np.float64)
        mouth.append(mouth_opening(align_2d(normalise_scale(landmarks)[0]).aligned)[frames])
        # Intrinsic Y-X-Z (yaw about the image-vertical axis first), the convention of the schema's
        # head_rotation (see data_pipelines.synthtalk.face.euler_to_rotation).
        yaw.append(rotation_to_euler(np.asarray(ex["head_rotation"], np.float64), order="YXZ")[frames, 0])
        speaker.append(np.full(len(frames), int(ex["speaker"])))
    return ProbeData(*(np.concatenate(v) for v in (windows, mouth, yaw, speaker)))


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge on standardised features; returns (mean, std, weights, bias)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return mean, std, weights, float(y.mean())


def r2_score(y: np.ndarray, prediction: np.ndarray) -> float:
    return float(1.0 - np.sum((y - prediction) ** 2) / np.sum((y - y.mean()) ** 2))


def ridge_r2(train_x, train_y, test_x, test_y, alpha: float) -> float:
    mean, std, weights, bias = ridge_fit(train_x, train_y, alpha)
    return r2_score(test_y, ((test_x - mean) / std) @ weights + bias)


def lip_and_pose_probe(train: ProbeData, test: ProbeData, alpha: float = 100.0) -> dict[str, float]:
    """Test-speaker R^2 of ridge regressions from mel windows to mouth opening and to yaw."""
    return {
        "mouth_r2": ridge_r2(train.windows, train.mouth, test.windows, test.mouth, alpha),
        "yaw_r2": ridge_r2(train.windows, train.yaw, test.windows, test.yaw, alpha),
    }


def clip_mean_log_mel(example: dict[str, Any]) -> np.ndarray:
    return audio_features.log_mel(np.asarray(example["audio"], np.float32)).mean(axis=0)


def speaker_probe(enrol: Iterable[dict[str, Any]], held_out: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Nearest-centroid speaker accuracy of clip-mean log-mel (Euclidean, features standardised on `enrol`)."""
    enrol = list(enrol)
    held_out = list(held_out)
    x_enrol = np.stack([clip_mean_log_mel(e) for e in enrol])
    y_enrol = np.array([int(e["speaker"]) for e in enrol])
    x_test = np.stack([clip_mean_log_mel(e) for e in held_out])
    y_test = np.array([int(e["speaker"]) for e in held_out])
    mean, std = x_enrol.mean(0), x_enrol.std(0) + 1e-6
    speakers = np.unique(y_enrol)
    centroids = np.stack([((x_enrol[y_enrol == s] - mean) / std).mean(0) for s in speakers])
    z = (x_test - mean) / std
    distance = ((z[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    predicted = speakers[np.argmin(distance, axis=1)]
    return {"accuracy": float(np.mean(predicted == y_test)), "chance": 1.0 / len(speakers), "num_clips": len(y_test)}
