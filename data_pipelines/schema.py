"""The one example schema of every talking-head dataset (SynthTalk, VoxCeleb2, MEAD).

One example is one clip (one utterance of one speaker). Trainers read only these fields, so a
trainer written against SynthTalk runs unchanged on the real datasets.

| field | type | meaning |
|---|---|---|
| `clip_id` | text | unique id, e.g. `id00012/21Uxsk56VDQ/00001` or `synth_vox_00003/train/neutral_0/0001` |
| `speaker_id` | text | dataset speaker id (`id00012`, `M003`, `synth_vox_00003`) |
| `speaker` | int32 | index of `speaker_id` in the dataset's sorted speaker list (metadata `speakers`) |
| `emotion` | class label | MEAD's 8 emotions; `neutral` where the data has no label |
| `intensity` | int32 | MEAD level 1-3; 0 = not labelled (VoxCeleb2, voxceleb_like) |
| `fps` | float32 | video frame rate (25 after preprocessing) |
| `sample_rate` | int32 | audio rate (16000 after preprocessing) |
| `frames` | bytes (T,) | one JPEG per frame, RGB, square face crop |
| `audio` | float32 (N,) | mono waveform in [-1, 1]; N = T * sample_rate / fps |
| `landmarks_2d` | float32 (T, 68, 2) | iBUG-68 points in pixels of the stored frames (x right, y down) |
| `landmarks_3d` | float32 (T, 68, 3) | posed 3-D points; NaN where the source has no 3-D landmarks |
| `landmarks_valid` | bool (T,) | False where no face was found (values then interpolated or NaN) |
| `head_rotation` | float32 (T, 3, 3) | head pose R: posed = R @ frontal + t (SynthTalk exact; real data from the 27-point rigid fit) |
| `head_translation` | float32 (T, 3) | head pose t, in the units of `landmarks_3d` |
| `visemes` | float32 (T or 0, 4) | SynthTalk only: jaw_open, lip_width, rounding, closure; empty for real data |
| `phonemes` | int32 (P,) | SynthTalk only: phoneme indices (metadata `phonemes`); empty for real data |
| `phoneme_start`, `phoneme_end` | float32 (P,) | SynthTalk only: phoneme boundaries in seconds |

Frames are stored encoded (JPEG) and decoded only where a pipeline needs them, so a window of 5
frames from a 64-frame clip decodes 5 images, not 64.
"""

from __future__ import annotations

import numpy as np

EMOTIONS = ("neutral", "angry", "disgusted", "contempt", "fear", "happy", "sad", "surprised")
NUM_LANDMARKS = 68


def features():
    """The tfds FeaturesDict (tfds imported here: readers of the constants need not pay for it)."""
    import tensorflow_datasets as tfds

    tensor = tfds.features.Tensor
    return tfds.features.FeaturesDict(
        {
            "clip_id": tfds.features.Text(),
            "speaker_id": tfds.features.Text(),
            "speaker": tfds.features.Scalar(dtype=np.int32),
            "emotion": tfds.features.ClassLabel(names=EMOTIONS),
            "intensity": tfds.features.Scalar(dtype=np.int32),
            "fps": tfds.features.Scalar(dtype=np.float32),
            "sample_rate": tfds.features.Scalar(dtype=np.int32),
            # Encoded images as a bytes tensor: tfds' Image feature would decode every frame
            # on read (and needs TensorFlow to encode arrays).
            "frames": tensor(shape=(None,), dtype=np.object_),
            "audio": tensor(shape=(None,), dtype=np.float32),
            "landmarks_2d": tensor(shape=(None, NUM_LANDMARKS, 2), dtype=np.float32),
            "landmarks_3d": tensor(shape=(None, NUM_LANDMARKS, 3), dtype=np.float32),
            "landmarks_valid": tensor(shape=(None,), dtype=np.bool_),
            "head_rotation": tensor(shape=(None, 3, 3), dtype=np.float32),
            "head_translation": tensor(shape=(None, 3), dtype=np.float32),
            "visemes": tensor(shape=(None, 4), dtype=np.float32),
            "phonemes": tensor(shape=(None,), dtype=np.int32),
            "phoneme_start": tensor(shape=(None,), dtype=np.float32),
            "phoneme_end": tensor(shape=(None,), dtype=np.float32),
        }
    )


def as_text(value) -> str:
    """Text features read back as bytes from array_record sources."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
