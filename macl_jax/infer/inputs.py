"""The inputs of generation, checked: a face photo and a speech file.

Every problem is a `MediaError` that names the file and says what to do. Speech is decoded once,
block by block, into temporary 16 kHz mono WAV files (one for the model, one at the output rate
for the video's audio track), so a file of any length is handled in bounded memory.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageOps, UnidentifiedImageError

from data_pipelines.real.preprocess import PreprocessOptions, apply_crop, crop_box, detect_faces, landmarks_68, to_crop
from macl_jax.media.video_io import MediaError, audio_info, iter_audio

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
MODEL_RATE = 16000
# AAC sample rates the output keeps as they are; other rates are resampled to 48 kHz.
_KEEP_RATES = (16000, 22050, 24000, 32000, 44100, 48000)
# Speech louder than this at its 95th-percentile frame is at the level of the training data
# (SynthTalk's clips: median -19 dBFS, range -27 to -10); quieter or louder input is scaled to it.
DEFAULT_LOUDNESS_DB = -20.0
SILENCE_DB = -60.0
MIN_SECONDS = 0.2

_FACE_HINT = (
    "Use a photo with one frontal, unobstructed face at least 80 px wide between the ears; "
    "crop closer to the face or use a larger image"
)


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W, 3) RGB of any image file PIL reads, EXIF orientation applied."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found", "Check the --image path")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError(path, f"is not a readable image ({error})", "Pass a JPEG, PNG or WebP photo") from error
    if min(rgb.shape[:2]) < 32:
        raise MediaError(path, f"is only {rgb.shape[1]}x{rgb.shape[0]} px", _FACE_HINT)
    return rgb


def find_face(photo: np.ndarray, path: str | os.PathLike = "<image>") -> np.ndarray:
    """dlib's 68 landmarks (x, y) of the largest face in `photo`: float64 (68, 2).

    HOG detection first (small photos are upsampled so faces of ~40 px are found), the MMOD CNN
    detector when HOG finds nothing.
    """
    image = photo
    factor = 1.0
    if max(photo.shape[:2]) < 400:
        factor = 2.0
        image = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * 2, photo.shape[0] * 2), Image.BICUBIC))
    try:
        boxes, _ = detect_faces(image, PreprocessOptions(detect_max_side=1024), use_cnn=True)
    except ImportError as error:
        raise MediaError(path, "cannot be searched for a face: dlib is missing", "reinstall macl-jax (bash launch/setup.sh), which installs dlib-bin and face_recognition_models") from error
    if not boxes:
        raise MediaError(path, "has no face that dlib's detectors (HOG, then CNN) can find", _FACE_HINT)
    return landmarks_68(image, boxes[0]) / factor


def crop_face(photo: np.ndarray, landmarks: np.ndarray, size: int, crop_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A square crop of `size` px around the face (the real-data preprocessing's framing: side =
    crop_scale x the landmark extent) and the landmarks in its pixels."""
    box = crop_box(np.asarray(landmarks, np.float64)[None], crop_scale)
    return apply_crop(photo[None], box, size)[0], to_crop(np.asarray(landmarks, np.float64), box, size)


@dataclasses.dataclass(frozen=True)
class Speech:
    """A decoded speech file: 16 kHz model input (loudness-normalised by `gain`) and the output track."""

    source: Path
    model_wav: Path
    track_wav: Path
    num_samples: int  # at 16 kHz
    track_rate: int
    gain: float

    @property
    def num_frames(self) -> int:
        """Video frames at 25 fps covering the audio (the last partial frame included)."""
        return -(-self.num_samples // SAMPLES_PER_FRAME)

    @property
    def seconds(self) -> float:
        return self.num_samples / MODEL_RATE

    def read(self, start: int, stop: int) -> np.ndarray:
        """Model-input samples [start, stop) at 16 kHz, gain applied, zeros outside the file."""
        out = np.zeros(stop - start, np.float32)
        lo, hi = max(start, 0), min(stop, self.num_samples)
        if hi > lo:
            with sf.SoundFile(self.model_wav) as f:
                f.seek(lo)
                out[lo - start : hi - start] = np.clip(f.read(hi - lo, dtype="float32") * self.gain, -1.0, 1.0)
        return out


def _frame_levels_db(data: np.ndarray) -> tuple[list[float], np.ndarray]:
    """RMS in dBFS of every whole 40 ms frame of `data`, and the samples after the last whole frame."""
    whole = len(data) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
    frames = data[:whole].reshape(-1, SAMPLES_PER_FRAME).astype(np.float64)
    return (10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)).tolist(), data[whole:]


def decode_speech(path: str | os.PathLike, workdir: str | os.PathLike, loudness_db: float = DEFAULT_LOUDNESS_DB) -> Speech:
    """Decodes any audio file FFmpeg reads (wav, flac, mp3, m4a, ...; any rate and channel count)
    into `workdir`, checks it and measures its level; memory stays bounded."""
    path = Path(path)
    rate, channels = audio_info(path)
    track_rate = rate if rate in _KEEP_RATES else 48000
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model_wav, track_wav = workdir / f"{path.stem}.16k.wav", workdir / f"{path.stem}.track.wav"
    levels: list[float] = []
    carry = np.zeros(0, np.float32)
    count = 0
    finite = True
    with sf.SoundFile(model_wav, "w", MODEL_RATE, 1, subtype="FLOAT") as out:
        for block in iter_audio(path, MODEL_RATE):
            finite &= bool(np.isfinite(block).all())
            out.write(block)
            count += len(block)
            new, carry = _frame_levels_db(np.concatenate([carry, block]))
            levels += new
    with sf.SoundFile(track_wav, "w", track_rate, 1, subtype="FLOAT") as out:
        for block in iter_audio(path, track_rate):
            out.write(np.clip(np.nan_to_num(block), -1.0, 1.0))
    if not finite:
        raise MediaError(path, "decodes to NaN or infinite samples", "Re-encode it, e.g. `ffmpeg -i IN -ac 1 -ar 16000 OUT.wav`")
    if count < MIN_SECONDS * MODEL_RATE:
        raise MediaError(path, f"holds {count / MODEL_RATE:.3f} s of audio; at least {MIN_SECONDS} s is needed", "Pass a longer speech file")
    if len(carry):  # the last, partial frame, zero-padded
        levels += _frame_levels_db(np.pad(carry, (0, SAMPLES_PER_FRAME - len(carry))))[0]
    loud = float(np.percentile(levels, 95))
    if loud < SILENCE_DB:
        raise MediaError(
            path, f"is silent (95th-percentile level {loud:.1f} dBFS over {channels} channel(s))",
            "Pass a file with audible speech; check that the right channel or stream holds the voice",
        )
    return Speech(path, model_wav, track_wav, count, track_rate, float(10 ** ((loudness_db - loud) / 20)))
