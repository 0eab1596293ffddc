"""Per-video preprocessing of real talking-head footage into one schema clip.

`preprocess_video(video, audio=None, options)` is a pure function of the files it reads: the
same bytes give the same clip in any process, under the plain build, `--shard i/N` workers and
Apache Beam alike. Steps:

1. PyAV decoding (`macl_jax.media.video_io`), frames re-timed to 25 fps by nearest timestamp,
   audio resampled to 16 kHz mono (from the companion m4a/wav when given, else the video's own
   stream).
2. dlib face detection per frame on a downscaled copy (HOG; the MMOD CNN detector as a fallback
   on frames HOG misses), 68 landmarks on the full-resolution frame. One face is tracked: the
   largest in the first frame, then the detection overlapping the previous box most; a
   detection that overlaps nothing is another person and counts as a miss.
3. Gaps of <= `max_gap` frames interpolated; at longer gaps the clip is cut to its longest
   face-covered run. Savitzky-Golay (7, 3) smoothing of the landmark tracks.
4. One square crop box for the whole clip (no per-frame jitter), resampled to 256 px;
   landmarks mapped into crop pixels.
5. MACL's 2-D pose path (clip scale/offset, 9-point T-shape alignment with angle and
   translation, closed-mouth reference frame), a 27-point scaled-orthographic head pose, and
   the MACL log-mel of the audio.

Files that cannot become a clip raise `SkipClip(reason, detail)`; conditions that were repaired
(resampled rates, extra faces, interpolated frames) are listed in `ProcessedClip.notes`. Both
feed the dataset's `preprocess_report.json` (see `report.py`).

What real data stores where the schema expects 3-D: no depth is measured. `head_rotation` is the
rotation R of the scaled-orthographic fit landmarks_2d ~ s * (R X)[:2] + t of SynthTalk's 3-D
mean face X on the 27 stable points (same axes and Euler convention as SynthTalk: x right, y down,
z toward the camera), `head_translation` is (t_x, t_y, 0) in crop pixels, and `landmarks_3d` is
(x, y, z) with the observed x, y and the fitted mean face's depth z = s (R X)_z (`lift_landmarks`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import av
import numpy as np
from PIL import Image

from data_pipelines.synthtalk import face
from macl_jax.geometry import (
    STABLE_27_INDICES,
    align_2d,
    closed_mouth_frame,
    interpolate_gaps,
    normalise_scale,
    savgol_smooth,
)
from macl_jax.media import audio_features
from macl_jax.media.video_io import MediaError, read_audio, read_video

# Why a file was left out of the dataset (report keys; stable strings, documented in docs/real_data.md).
SKIP_REASONS = {
    "missing_file": "a file the layout names does not exist",
    "unreadable": "not a media file (random bytes, wrong format, empty)",
    "truncated": "the file ends early (interrupted download or copy)",
    "corrupt": "decoding failed part-way",
    "no_video_stream": "the video file has no video stream",
    "no_audio": "neither the companion audio file nor the video has an audio stream",
    "no_face": "no face detected in the probe frames",
    "face_lost": "faces found, but no run of tracked frames long enough once gaps > max_gap are cut",
    "too_short": "fewer frames (or seconds of audio) than the minimum",
    "error": "an unexpected exception (message in the report)",
}
# Conditions that were repaired; the clip is kept.
NOTES = {
    "resampled_fps": "video frame rate was not 25 fps (re-timed by nearest timestamp)",
    "resampled_audio": "audio sample rate was not 16 kHz",
    "downmixed_audio": "audio had more than one channel",
    "audio_from_video": "no companion audio file: the video's own audio stream was used",
    "multiple_faces": "more than one face in some frame; the tracked one was kept",
    "interpolated_frames": "frames without a face were interpolated (gap <= max_gap)",
    "cnn_fallback": "HOG missed the face on some frames; the CNN detector found it",
    "cut_at_face_gap": "a longer gap without a face: the longest covered run was kept",
    "trimmed_to_audio": "video longer than its audio: trailing frames dropped",
}


class SkipClip(Exception):
    """A file that cannot become a clip; `reason` is a key of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; use one of {sorted(SKIP_REASONS)}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """Knobs of `preprocess_video` (recorded in the dataset's metadata)."""

    fps: float = 25.0
    sample_rate: int = 16000
    crop_size: int = 256
    crop_scale: float = 2.0  # crop side / median landmark-box side
    min_frames: int = 64  # MACL's MDN window; shorter clips are skipped
    max_gap: int = 5
    smooth_window: int = 7
    smooth_order: int = 3
    detect_max_side: int = 640  # frames are downscaled to this for detection (MEAD 1080p: faces ~130 px)
    cnn_fallback: bool = True
    max_cnn_frames: int = 12  # CNN calls per clip at most (0.2-0.8 s each on one core)
    probe_frames: int = 4  # evenly spaced frames checked first: a faceless file costs only these
    jpeg_quality: int = 90
    min_audio_seconds: float = 1.0  # audio-only clips (VoxCeleb1)

    def __post_init__(self):
        if self.crop_size < 32 or self.min_frames < 1 or self.max_gap < 0 or self.crop_scale <= 1:
            raise ValueError(f"invalid PreprocessOptions {self}: need crop_size >= 32, min_frames >= 1, "
                             "max_gap >= 0 and crop_scale > 1")


@dataclasses.dataclass(frozen=True, eq=False)
class ProcessedClip:
    """One preprocessed clip. Coordinates of `landmarks` etc. are crop pixels (centres at integers)."""

    frames: np.ndarray  # uint8 (T, S, S, 3)
    audio: np.ndarray  # float32 (T * sample_rate / fps,)
    landmarks: np.ndarray  # float32 (T, 68, 2), smoothed
    valid: np.ndarray  # bool (T,), False where the landmarks were interpolated
    crop_box: tuple[float, float, float]  # (x0, y0, side) in source pixels (pixel-edge coordinates)
    start_frame: int  # first kept frame of the 25 fps source
    aligned: np.ndarray  # float32 (T, 68, 2), normalised and T-shape aligned (docs/decisions.md#d7-landmark-preprocessing)
    angle: np.ndarray  # float32 (T,), radians, in-plane angle of the alignment
    translation: np.ndarray  # float32 (T, 2)
    scale: float  # clip eye-corner distance in crop pixels
    offset: np.ndarray  # float32 (2,)
    closed_mouth: int  # index of the most closed-mouth frame
    landmarks_3d: np.ndarray  # float32 (T, 68, 3): x, y of `landmarks`, the fitted mean face's depth
    head_rotation: np.ndarray  # float32 (T, 3, 3)
    head_translation: np.ndarray  # float32 (T, 3)
    mel: np.ndarray  # float32 (M, 80), MACL log-mel
    notes: tuple[str, ...]
    source: dict[str, Any]  # fps, sample_rate, channels, size, frames of the input


# ----------------------------------------------------------------------------- dlib models


@functools.lru_cache(maxsize=1)
def _models():
    """dlib's HOG detector, 68-point predictor and MMOD CNN detector, loaded once per process."""
    # Imported on first use: importing this module (inference does) stays cheap until a face is needed.
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as error:  # pragma: no cover - dlib-bin and its models are core dependencies
        raise ImportError(
            "real-data preprocessing needs dlib and its models: pip install dlib-bin face_recognition_models "
            "(dependencies of macl-jax: bash launch/setup.sh installs them)"
        ) from error
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_model_location()),
        dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location()),
        dlib,
    )


def _downscaled(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = frame.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if factor >= 1.0:
        return frame, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)), factor


def detect_faces(frame: np.ndarray, options: PreprocessOptions, use_cnn: bool) -> tuple[list[np.ndarray], bool]:
    """Face boxes (x0, y0, x1, y1) in frame pixels, largest first, and whether the CNN ran.

    HOG runs on the frame downscaled to `detect_max_side`; the CNN only when HOG finds nothing
    and `use_cnn` is set.
    """
    hog, _, cnn, _ = _models()
    small, factor = _downscaled(frame, options.detect_max_side)
    rects, _, _ = hog.run(small, 0, 0.0)
    cnn_ran = False
    if not len(rects) and use_cnn:
        rects = [d.rect for d in cnn(small, 0)]
        cnn_ran = True
    boxes = [np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64) / factor for r in rects]
    boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    return boxes, cnn_ran


def landmarks_68(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 68 points (x, y) in the box of a face: float64 (68, 2)."""
    _, predictor, _, dlib = _models()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = predictor(frame, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_face(frames: np.ndarray, options: PreprocessOptions) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """68 landmarks per frame of one tracked face: (T, 68, 2) float64, valid (T,), notes.

    Raises SkipClip("no_face") when none of `probe_frames` evenly spaced frames shows a face
    (with the CNN fallback): a faceless file costs a few detections, not one per frame.
    """
    num = len(frames)
    notes: set[str] = set()
    budget = options.max_cnn_frames if options.cnn_fallback else 0
    probes = np.unique(np.linspace(0, num - 1, min(num, options.probe_frames)).round().astype(int))
    for i in probes:
        boxes, cnn_ran = detect_faces(frames[i], options, use_cnn=budget > 0)
        budget -= int(cnn_ran)
        if boxes:
            break
    else:
        raise SkipClip("no_face", f"no face in frames {probes.tolist()} (HOG{' + CNN' if options.cnn_fallback else ''})")

    landmarks = np.zeros((num, 68, 2))
    valid = np.zeros(num, bool)
    previous = None
    for t in range(num):
        boxes, cnn_ran = detect_faces(frames[t], options, use_cnn=budget > 0)
        budget -= int(cnn_ran)
        if cnn_ran and boxes:
            notes.add("cnn_fallback")
        if len(boxes) > 1:
            notes.add("multiple_faces")
        if not boxes:
            continue
        if previous is None:
            box = boxes[0]  # the largest face starts the track
        else:
            overlaps = [_iou(b, previous) for b in boxes]
            best = int(np.argmax(overlaps))
            if overlaps[best] < 0.2:
                continue  # someone else: the tracked face is missing in this frame
            box = boxes[best]
        landmarks[t] = landmarks_68(frames[t], box)
        valid[t] = True
        previous = box
    return landmarks, valid, notes


# ----------------------------------------------------------------------------- geometry


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[start, end) of the longest run of True in a 1-D mask ((0, 0) if none)."""
    best, start = (0, 0), None
    for i, value in enumerate(np.append(mask, False)):
        if value and start is None:
            start = i
        elif not value and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def crop_box(landmarks: np.ndarray, crop_scale: float) -> tuple[float, float, float]:
    """One square box (x0, y0, side), pixel-edge coordinates, holding every frame's face.

    Centred on the median landmark-box centre, raised by 10% of the face so the forehead is in;
    side = crop_scale x the median face extent, enlarged if any landmark would leave the box.
    """
    lo, hi = landmarks.min(axis=1), landmarks.max(axis=1)
    extent = np.median(np.max(hi - lo, axis=-1))
    centre = np.median((lo + hi) / 2, axis=0) - np.array([0.0, 0.1 * extent])
    reach = np.max(np.abs(landmarks - centre))
    side = max(crop_scale * extent, 2.2 * reach)
    # Pixel centres are at integers, so the pixel-edge coordinate of centre c is c + 0.5.
    return float(centre[0] + 0.5 - side / 2), float(centre[1] + 0.5 - side / 2), float(side)


def apply_crop(frames: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Resamples the box of every frame to size x size (bilinear; outside the frame is black)."""
    x0, y0, side = box
    extent = (x0, y0, x0 + side, y0 + side)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).transform((size, size), Image.EXTENT, extent, Image.BILINEAR))
    return out


def to_crop(points: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Source pixel coordinates -> crop pixel coordinates (both with pixel centres at integers)."""
    x0, y0, side = box
    return (points + 0.5 - np.array([x0, y0])) * (size / side) - 0.5


def weak_perspective_pose(
    points: np.ndarray, canonical: np.ndarray, indices: tuple[int, ...] = STABLE_27_INDICES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled-orthographic pose of 2-D landmarks: points (T, 68, 2) ~ s (R X)[:2] + t.

    Per frame, the least-squares affine map of the centred canonical points X (68, 3) onto the
    centred observations gives two rows a1, a2 = s R[:2]; [a1, a2, a1 x a2 / s] / s is projected
    onto SO(3) by SVD. Returns R (T, 3, 3), t (T, 2), s (T,).
    """
    idx = np.asarray(indices)
    x = np.asarray(points, np.float64)[:, idx]
    X = np.asarray(canonical, np.float64)[idx]
    xc = x - x.mean(axis=1, keepdims=True)
    Xc = X - X.mean(axis=0)
    pinv = np.linalg.pinv(Xc)  # (3, K)
    a = np.einsum("jk,tkc->tcj", pinv, xc)  # (T, 2, 3): rows a1, a2
    s = 0.5 * (np.linalg.norm(a[:, 0], axis=-1) + np.linalg.norm(a[:, 1], axis=-1))
    m = np.concatenate([a, np.cross(a[:, 0], a[:, 1])[:, None] / s[:, None, None]], axis=1) / s[:, None, None]
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ (vt * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[:, :, None])
    t = x.mean(axis=1) - s[:, None] * np.einsum("tij,j->ti", r[:, :2], X.mean(axis=0))
    return r, t, s


@functools.lru_cache(maxsize=1)
def _canonical_face() -> np.ndarray:
    return face.mean_shape()


def lift_landmarks(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D pixel landmarks (T, 68, 2) with a depth: posed (T, 68, 3), R (T, 3, 3), t (T, 3).

    The scaled-orthographic pose of `weak_perspective_pose` against SynthTalk's mean face gives
    each point the depth of the fitted mean face, s (R X)_z, in the same pixel units; x and y stay
    the observed ones. So posed = R local + t (t_z = 0) holds for a face-local shape that is the
    mean face's depth under the observed outline, which is what the 3-D render of one photo needs
    (an orthographic camera in the crop's pixels, `macl_jax.geometry.camera.Orthographic()`).
    """
    points = np.asarray(points, np.float64)
    canonical = _canonical_face()
    rotation, translation, scale = weak_perspective_pose(points, canonical)
    depth = scale[:, None] * np.einsum("tj,kj->tk", rotation[:, 2], canonical)
    posed = np.concatenate([points, depth[..., None]], axis=-1)
    return posed, rotation, np.concatenate([translation, np.zeros((len(points), 1))], axis=1)


# ----------------------------------------------------------------------------- media


def probe(path: str | os.PathLike) -> dict[str, Any]:
    """Stream parameters of a media file (fps, size, frames, sample_rate, channels); {} if unreadable."""
    try:
        with av.open(str(path)) as container:
            info: dict[str, Any] = {}
            if container.streams.video:
                v = container.streams.video[0]
                rate = v.average_rate or v.guessed_rate
                info.update(fps=float(rate) if rate else None, size=[v.width, v.height], frames=int(v.frames or 0))
            if container.streams.audio:
                a = container.streams.audio[0]
                info.update(sample_rate=int(a.sample_rate or 0), channels=int(a.channels or 0))
            return info
    except Exception:  # noqa: BLE001 - the decode step reports the real error
        return {}


def mp4_truncated(path: str | os.PathLike) -> bool:
    """True if an MP4/M4A's top-level boxes claim more bytes than the file has (cut-off copy)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                header = f.read(16)
                length = int.from_bytes(header[:4], "big")
                if not header[4:8].isalnum():
                    return False  # not an ISO-BMFF file
                if length == 1:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    return False  # box extends to the end of the file by definition
                if length < 8:
                    return False
                pos += length
            return pos > size
    except OSError:
        return False


def classify_media_error(error: MediaError) -> str:
    """The SKIP_REASONS key of a video_io.MediaError."""
    text = str(error)
    if ("decoding failed" in text or "cannot be opened" in text) and mp4_truncated(error.path):
        return "truncated"
    if "file not found" in text:
        return "missing_file"
    if "truncated" in text:
        return "truncated"
    if "has no video stream" in text:
        return "no_video_stream"
    if "has no audio stream" in text:
        return "no_audio"
    if "decoding failed" in text or "could not be decoded" in text:
        return "corrupt"
    return "unreadable"


def _audio_notes(info: dict[str, Any], sample_rate: int) -> set[str]:
    notes = set()
    if info.get("sample_rate") and info["sample_rate"] != sample_rate:
        notes.add("resampled_audio")
    if info.get("channels", 1) > 1:
        notes.add("downmixed_audio")
    return notes


def load_audio(path: str | os.PathLike, options: PreprocessOptions) -> tuple[np.ndarray, set[str], dict[str, Any]]:
    """16 kHz mono float32 audio of a wav/m4a file, with resampling notes; raises SkipClip."""
    info = probe(path)
    try:
        audio = read_audio(path, options.sample_rate)
    except MediaError as error:
        raise SkipClip(classify_media_error(error), str(error)) from None
    return np.clip(audio, -1.0, 1.0), _audio_notes(info, options.sample_rate), info


def preprocess_audio(path: str | os.PathLike, options: PreprocessOptions = PreprocessOptions()) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
    """An audio-only clip (VoxCeleb1): (waveform, notes, source info); raises SkipClip."""
    audio, notes, info = load_audio(path, options)
    if audio.size < options.min_audio_seconds * options.sample_rate:
        raise SkipClip("too_short", f"{audio.size / options.sample_rate:.2f} s of audio < {options.min_audio_seconds} s")
    return audio, tuple(sorted(notes)), info


# ----------------------------------------------------------------------------- the per-video function


def preprocess_video(
    video_path: str | os.PathLike,
    audio_path: str | os.PathLike | None = None,
    options: PreprocessOptions = PreprocessOptions(),
) -> ProcessedClip:
    """Preprocesses one video (+ its companion audio file, if any) into a clip; raises SkipClip."""
    notes: set[str] = set()
    info = probe(video_path)
    if info.get("fps") and abs(info["fps"] - options.fps) > 1e-3:
        notes.add("resampled_fps")
    companion = audio_path is not None and os.path.exists(audio_path)
    try:
        video = read_video(video_path, target_fps=options.fps, sample_rate=options.sample_rate, decode_audio=not companion)
    except MediaError as error:
        raise SkipClip(classify_media_error(error), str(error)) from None
    if companion:
        audio, audio_notes, audio_info = load_audio(audio_path, options)
        notes |= audio_notes
    else:
        if video.audio is None or video.audio.size == 0:
            where = f"{audio_path} is missing and " if audio_path is not None else ""
            raise SkipClip("no_audio", f"{where}{video_path} has no audio stream")
        audio, audio_info = np.clip(video.audio, -1.0, 1.0), info
        notes |= _audio_notes(info, options.sample_rate)
        if audio_path is not None:
            notes.add("audio_from_video")

    frames = video.frames
    per_frame = options.sample_rate / options.fps
    audio_frames = int(np.floor(audio.size / per_frame + 1e-6))
    if audio_frames < len(frames) - 2:  # a couple of frames of codec slack are padded instead
        frames = frames[:audio_frames]
        notes.add("trimmed_to_audio")
    if len(frames) < options.min_frames:
        raise SkipClip("too_short", f"{len(frames)} frames at {options.fps:g} fps < min_frames={options.min_frames}")

    raw, valid, track_notes = track_face(frames, options)
    notes |= track_notes
    filled, missing = interpolate_gaps(raw, valid, options.max_gap)
    if np.any(~valid & ~missing):
        notes.add("interpolated_frames")
    start, end = longest_run(~missing)
    if end - start < options.min_frames:
        raise SkipClip("face_lost", f"longest run with a tracked face is {end - start} frames < min_frames={options.min_frames}")
    if end - start < len(frames):
        notes.add("cut_at_face_gap")
    landmarks = savgol_smooth(filled[start:end], options.smooth_window, options.smooth_order, axis=0)
    valid = valid[start:end]
    frames = frames[start:end]
    num = end - start

    first, count = int(round(start * per_frame)), int(round(num * per_frame))
    clip_audio = audio[first : first + count]
    clip_audio = np.pad(clip_audio, (0, count - clip_audio.size)).astype(np.float32)

    box = crop_box(landmarks, options.crop_scale)
    crops = apply_crop(frames, box, options.crop_size)
    crop_landmarks = to_crop(landmarks, box, options.crop_size)

    normalised, scale, offset = normalise_scale(crop_landmarks)
    alignment = align_2d(normalised)
    posed, rotation, translation = lift_landmarks(crop_landmarks)
    return ProcessedClip(
        frames=crops,
        audio=clip_audio,
        landmarks=crop_landmarks.astype(np.float32),
        valid=valid,
        crop_box=box,
        start_frame=start,
        aligned=alignment.aligned.astype(np.float32),
        angle=alignment.angle.astype(np.float32),
        translation=alignment.translation.astype(np.float32),
        scale=float(scale),
        offset=np.asarray(offset, np.float32),
        closed_mouth=int(closed_mouth_frame(alignment.aligned, method="area")),
        landmarks_3d=posed.astype(np.float32),
        head_rotation=rotation.astype(np.float32),
        head_translation=translation.astype(np.float32),
        mel=audio_features.log_mel(clip_audio),
        notes=tuple(sorted(notes)),
        source={
            "fps": info.get("fps"),
            "size": info.get("size"),
            "frames": info.get("frames"),
            "sample_rate": audio_info.get("sample_rate"),
            "channels": audio_info.get("channels"),
        },
    )
