"""Video and audio files through PyAV (FFmpeg's libraries; no ffmpeg binary or OpenCV needed).

Conventions:
- Frames are uint8 RGB, shape (T, H, W, 3). Audio is float32 mono in [-1, 1], shape (N,).
- ``write_video`` encodes H.264 (libx264, yuv420p) plus AAC in an MP4/MOV container. yuv420p
  needs even sizes, so odd frames are padded by repeating the last row/column and the true size is
  stored in the container tag ``macl_frame_size``; ``read_video`` crops it back. Other players
  show the padded size.
- AAC encoders prepend ~1024 priming samples; FFmpeg's MP4 muxer records them in an edit list and
  the demuxer drops them again, so audio read back starts in sync (measured lag: 0 samples). The
  zero padding that fills the last 1024-sample AAC frame is cut at the stream's declared duration
  (the container stores it in ms, so lengths come back within 1 ms). Audio returned by
  ``read_video`` is shifted to start at the first video frame's timestamp.
- Truncated files are reported, not silently shortened: a decoder error, more than 2 frames
  fewer than the container lists, or audio more than 0.1 s short of its declared duration all
  raise ``MediaError``.
- RGB<->YUV uses swscale's default (BT.601, limited range) in both directions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from macl_jax.media.atomic import atomic_output
from macl_jax.media.checks import require_uint8

__all__ = [
    "MediaError",
    "Video",
    "WavSlices",
    "nearest_frame_indices",
    "audio_info",
    "iter_audio",
    "read_audio",
    "read_video",
    "write_video",
    "write_wav",
]

REENCODE_HINT = (
    "If the file is damaged or in an unusual format, re-encode it, e.g. "
    "`ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p -c:a aac OUT.mp4` (audio only: "
    "`ffmpeg -i IN -ac 1 OUT.wav`)"
)
_SIZE_TAG = "macl_frame_size"
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
_X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)
_AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
# Audio decoded short of the stream's declared duration by more than this is a truncated file.
_MISSING_AUDIO_TOLERANCE_S = 0.1
# Decoders may legitimately emit a frame or two fewer than the container's sample count (edit
# lists trimming B-frame delay); more missing frames than this means the file is truncated.
_MISSING_FRAME_TOLERANCE = 2


class MediaError(ValueError):
    """A media file that is missing, corrupt or unsupported; the message names it and a fix."""

    def __init__(self, path: str | os.PathLike, problem: str, hint: str = REENCODE_HINT):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}. {hint}".rstrip(". ") + ".")


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no boolean ==
class Video:
    """Decoded video: ``frames`` uint8 (T, H, W, 3) RGB at ``fps``; ``audio`` float32 (N,) mono
    at ``sample_rate`` or None; ``timestamps`` float64 (T,) seconds from the first frame."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    timestamps: np.ndarray | None = None
    sample_rate: int = 16000


# ----------------------------------------------------------------------------- validation


def _check_audio(audio: object, name: str) -> np.ndarray:
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of float samples, got {type(audio).__name__}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"{name} must be floating point in [-1, 1], got dtype {audio.dtype}; for int16 PCM "
            f"use `{name}.astype(np.float32) / 32768`"
        )
    if audio.ndim != 1:
        raise ValueError(
            f"{name} must be mono with shape (N,), got shape {audio.shape}; mix down with "
            f"`{name}.mean(axis=...)` first"
        )
    if audio.size == 0:
        raise ValueError(f"{name} is empty; pass audio=None for a silent file")
    if not np.all(np.isfinite(audio)):
        bad = int(np.flatnonzero(~np.isfinite(audio))[0])
        raise ValueError(f"{name} contains NaN/Inf (first at sample {bad})")
    peak = float(np.max(np.abs(audio)))
    if peak > 1.0 + 1e-6:
        raise ValueError(
            f"{name} must lie in [-1, 1], peak is {peak:.4g}; normalise with "
            f"`{name} / np.abs({name}).max()` or clip with np.clip"
        )
    return np.ascontiguousarray(audio, dtype=np.float32)


def _check_rate(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (Hz), got {value!r}")
    return int(value)


def _check_fps(value: object, name: str) -> float:
    try:
        fps = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of frames per second, got {value!r}") from None
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{name} must be a positive number of frames per second, got {value!r}")
    return fps


def _check_frame(frame: object, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    where = f"frames[{index}]"
    frame = require_uint8(frame, where)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"{where} must have shape (H, W, 3) RGB, got {frame.shape}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"{where} has shape {frame.shape}, but earlier frames have {shape}")
    return frame


def _frame_source(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Yields validated frames; a whole array is checked before anything is encoded."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (T, H, W, 3) RGB, got {frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError("frames is empty (T = 0); a video needs at least one frame")
        _check_frame(frames[0], 0, None)
        yield from frames
        return
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise TypeError(
            "frames must be a (T, H, W, 3) uint8 array or an iterable of (H, W, 3) frames, "
            f"got {type(frames).__name__}"
        )
    shape = None
    count = 0
    for i, frame in enumerate(frames):
        frame = _check_frame(frame, i, shape)
        shape = frame.shape
        count += 1
        yield frame
    if count == 0:
        raise ValueError("frames yielded no frames; a video needs at least one frame")


def _container_format(path: Path) -> str:
    fmt = _CONTAINERS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported extension {path.suffix!r}; use one of {sorted(_CONTAINERS)}")
    return fmt


# ----------------------------------------------------------------------------- writing


def _rgb_frame(frame: np.ndarray, pad_h: int, pad_w: int) -> av.VideoFrame:
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")


def _encode_audio(container: av.container.OutputContainer, stream, chunk: np.ndarray, start: int, rate: int) -> None:
    aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
    aframe.sample_rate = rate
    aframe.pts = start
    aframe.time_base = Fraction(1, rate)
    # PyAV converts to AAC's planar float format and re-blocks into 1024-sample frames itself.
    container.mux(stream.encode(aframe))


class WavSlices:
    """A mono WAV file read by slices (``reader[a:b]``, ``reader.size``): lets ``write_video`` mux an
    audio track of any length without holding it in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with sf.SoundFile(self.path) as f:
            if f.channels != 1:
                raise MediaError(self.path, f"has {f.channels} channels; WavSlices reads mono files")
            self.size, self.sample_rate = int(f.frames), int(f.samplerate)

    def __getitem__(self, index: slice) -> np.ndarray:
        start, stop, _ = index.indices(self.size)
        with sf.SoundFile(self.path) as f:
            f.seek(start)
            return f.read(max(0, stop - start), dtype="float32")


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = 25.0,
    audio: np.ndarray | WavSlices | None = None,
    sample_rate: int = 16000,
    *,
    crf: int = 18,
    preset: str = "medium",
    audio_bitrate: int = 96_000,
) -> Path:
    """Writes H.264/AAC to ``path`` (.mp4/.m4v/.mov) atomically; returns the path.

    ``frames`` is a uint8 (T, H, W, 3) RGB array or an iterable of (H, W, 3) frames (streamed,
    validated one by one). ``audio`` is a mono float array or a ``WavSlices`` (streamed). ``crf`` is x264's constant-quality factor (0 = lossless luma, 18 is
    visually near-transparent, 23 is x264's default). Nothing is left at ``path`` unless the whole
    file was written; an existing file there survives any failure.
    """
    path = Path(path)
    fmt = _container_format(path)
    fps = _check_fps(fps, "fps")
    # Exact rational rate so that 30000/1001 and 62.5 fps keep exact timestamps.
    rate = Fraction(fps).limit_denominator(1001)
    if audio is not None:
        if not isinstance(audio, WavSlices):
            audio = _check_audio(audio, "audio")
        sample_rate = _check_rate(sample_rate, "sample_rate")
        if sample_rate not in _AAC_RATES:
            raise ValueError(f"sample_rate={sample_rate} is not an AAC rate; use one of {_AAC_RATES}")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
    if preset not in _X264_PRESETS:
        raise ValueError(f"preset must be one of {_X264_PRESETS}, got {preset!r}")
    source = _frame_source(frames)
    first = next(source)  # validates the array (or the first streamed frame) before any file exists

    with atomic_output(path) as tmp:
        container = av.open(
            str(tmp), "w", format=fmt, options={"movflags": "+faststart+use_metadata_tags"}
        )
        try:
            height, width = first.shape[:2]
            pad_h, pad_w = height % 2, width % 2
            if pad_h or pad_w:
                container.metadata[_SIZE_TAG] = f"{width}x{height}"
            vstream = container.add_stream("libx264", rate=rate)
            vstream.width, vstream.height = width + pad_w, height + pad_h
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": str(int(crf)), "preset": preset}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=sample_rate, layout="mono")
                astream.bit_rate = int(audio_bitrate)
            audio_pos = 0
            frame = first
            index = 0
            while True:
                vframe = _rgb_frame(frame, pad_h, pad_w)
                vframe.pts = index
                vframe.time_base = 1 / rate
                container.mux(vstream.encode(vframe))
                index += 1
                if astream is not None:
                    # Interleave: feed audio up to the end of this frame so the muxer never has
                    # to buffer one stream far ahead of the other.
                    end = min(audio.size, index * sample_rate * rate.denominator // rate.numerator)
                    if end > audio_pos:
                        _encode_audio(container, astream, audio[audio_pos:end], audio_pos, sample_rate)
                        audio_pos = end
                frame = next(source, None)
                if frame is None:
                    break
            if astream is not None:
                if audio_pos < audio.size:
                    _encode_audio(container, astream, audio[audio_pos:], audio_pos, sample_rate)
                container.mux(astream.encode(None))
            container.mux(vstream.encode(None))
        except BaseException:
            try:
                container.close()
            except Exception:  # the original error matters, not a failed trailer write
                pass
            raise
        container.close()
    return path


def write_wav(
    path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16"
) -> Path:
    """Writes mono float audio in [-1, 1] to a WAV file atomically (``subtype`` as in soundfile)."""
    path = Path(path)
    audio = _check_audio(audio, "audio")
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if subtype not in sf.available_subtypes("WAV"):
        raise ValueError(f"subtype {subtype!r} is not a WAV subtype; use e.g. 'PCM_16' or 'FLOAT'")
    with atomic_output(path) as tmp:
        sf.write(tmp, audio, sample_rate, subtype=subtype, format="WAV")
    return path


# ----------------------------------------------------------------------------- reading


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found", "Check the path (and the dataset root in the config)")
    if not path.is_file():
        raise MediaError(path, "is not a regular file", "Pass the path of a media file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes), probably an interrupted download or copy")
    return path


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise MediaError(path, f"cannot be opened as a media file ({err})") from err


_NO_STREAM_HINT = {"audio": "Pass a file with sound, or extract it first", "video": "Use read_audio for audio-only files"}


@contextlib.contextmanager
def _first_stream(path: Path, kind: str) -> Iterator[tuple[av.container.InputContainer, av.stream.Stream]]:
    """``path`` open for reading with its first ``kind`` ("audio" or "video") stream; closed on exit."""
    container = _open(path)
    try:
        streams = getattr(container.streams, kind)
        if not streams:
            raise MediaError(path, f"has no {kind} stream", _NO_STREAM_HINT[kind])
        yield container, streams[0]
    finally:
        container.close()


def _declared_seconds(stream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None  # raw streams may not declare a duration
    return float(stream.duration * stream.time_base)


def _check_audio_complete(path: Path, declared: float | None, decoded_seconds: float) -> None:
    if declared is not None and decoded_seconds < declared - _MISSING_AUDIO_TOLERANCE_S:
        raise MediaError(
            path, f"is truncated: the audio stream lists {declared:.3f} s, {decoded_seconds:.3f} s decoded"
        )


def _trim_padding(audio: np.ndarray, declared: float | None, sample_rate: int) -> np.ndarray:
    """Drops encoder end padding (AAC fills its last 1024-sample frame) beyond the declared
    duration; a larger disagreement with the container is left alone."""
    if declared is None:
        return audio
    keep = int(round(declared * sample_rate))
    if 0 < audio.size - keep <= _MISSING_AUDIO_TOLERANCE_S * sample_rate:
        return audio[:keep]
    return audio


def _resampled(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> list[np.ndarray]:
    return [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]


def audio_info(path: str | os.PathLike) -> tuple[int, int]:
    """(sample rate, channel count) of the first audio stream of ``path``."""
    with _first_stream(_existing_file(path), "audio") as (_, stream):
        return int(stream.codec_context.sample_rate or stream.rate or 0), int(stream.codec_context.channels or 0)


def iter_audio(path: str | os.PathLike, sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """Decodes the first audio stream of ``path`` block by block: float32 mono blocks at ``sample_rate``.

    Memory stays bounded whatever the file's length. Channels are averaged and FFmpeg's swresample
    resamples. A truncated file raises ``MediaError`` after its last decodable block. The encoder
    padding that ``read_audio`` trims (at most 0.1 s past the declared duration) is not trimmed here.
    """
    path = _existing_file(path)
    sample_rate = _check_rate(sample_rate, "sample_rate")
    with _first_stream(path, "audio") as (container, stream):
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        seconds = 0.0
        try:
            for frame in container.decode(stream):
                seconds += frame.samples / frame.sample_rate
                yield from _resampled(resampler, frame)
            yield from _resampled(resampler, None)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise MediaError(path, f"audio could not be decoded ({err})") from err
        _check_audio_complete(path, _declared_seconds(stream), seconds)


def read_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decodes the first audio stream of ``path`` (wav, flac, mp3, m4a, mp4, ...) to float32 mono.

    Channels are averaged and the result resampled to ``sample_rate`` by FFmpeg's swresample.
    """
    chunks = [block.astype(np.float32, copy=False) for block in iter_audio(path, sample_rate)]
    if not chunks:
        return np.zeros(0, np.float32)
    with _first_stream(Path(path), "audio") as (_, stream):
        declared = _declared_seconds(stream)
    return _trim_padding(np.concatenate(chunks), declared, sample_rate)


def nearest_frame_indices(timestamps: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """Source frame index for each output frame of a ``target_fps`` clip, by nearest timestamp.

    The output clock is ``k / target_fps`` from the first source frame, for every k whose time
    lies within the clip's duration ``(timestamps[-1] - timestamps[0]) + 1 / source_fps``; each
    output frame takes the source frame whose timestamp is closest, ties going to the earlier
    frame. 30 -> 25 fps thus keeps frames 0, 1, 2, 4, 5, 6, 7, 8, 10, ... (round(1.2 k)) and
    yields floor(T * 25 / 30) frames. Works for variable frame rate sources.
    """
    ts = np.asarray(timestamps, np.float64)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"timestamps must be a non-empty 1-D array, got shape {ts.shape}")
    source_fps = _check_fps(source_fps, "source_fps")
    target_fps = _check_fps(target_fps, "target_fps")
    ts = ts - ts[0]
    duration = ts[-1] + 1.0 / source_fps
    # The epsilon keeps an exact multiple (1 s * 25 fps) from losing its last frame to rounding.
    count = max(1, int(math.floor(duration * target_fps + 1e-6)))
    grid = np.arange(count, dtype=np.float64) / target_fps
    after = np.clip(np.searchsorted(ts, grid, side="left"), 0, ts.size - 1)
    before = np.clip(after - 1, 0, ts.size - 1)
    take_after = (ts[after] - grid) < (grid - ts[before]) - 1e-9
    return np.where(take_after, after, before)


def read_video(
    path: str | os.PathLike,
    target_fps: float | None = None,
    sample_rate: int = 16000,
    *,
    decode_audio: bool = True,
) -> Video:
    """Decodes ``path`` to RGB frames and (if present and ``decode_audio``) mono float32 audio.

    With ``target_fps`` the frames are re-timed by nearest-timestamp selection (see
    ``nearest_frame_indices``; e.g. MEAD 30 -> 25 fps), without blending. Audio is resampled with
    ``av.AudioResampler(format="flt", layout="mono", rate=sample_rate)`` and aligned to the first
    video frame (leading silence added, or early samples dropped). Raises ``MediaError`` for a
    missing, truncated, corrupt or video-less file.
    """
    path = _existing_file(path)
    sample_rate = _check_rate(sample_rate, "sample_rate")
    if target_fps is not None:
        target_fps = _check_fps(target_fps, "target_fps")
    with _first_stream(path, "video") as (container, vstream):
        vstream.thread_type = "AUTO"
        astream = container.streams.audio[0] if decode_audio and container.streams.audio else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        frames: list[np.ndarray] = []
        times: list[float | None] = []
        chunks: list[np.ndarray] = []
        audio_start: float | None = None
        audio_seconds = 0.0
        streams = [vstream] + ([astream] if astream is not None else [])
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if isinstance(frame, av.VideoFrame):
                        frames.append(frame.to_ndarray(format="rgb24"))
                        times.append(frame.time)
                    else:
                        if audio_start is None:
                            audio_start = frame.time
                        audio_seconds += frame.samples / frame.sample_rate
                        chunks.extend(_resampled(resampler, frame))
            if astream is not None:
                chunks.extend(_resampled(resampler, None))
        except (av.FFmpegError, OSError, ValueError) as err:
            raise MediaError(path, f"decoding failed after {len(frames)} frames ({err})") from err
        audio_declared = _declared_seconds(astream) if astream is not None else None
        _check_audio_complete(path, audio_declared, audio_seconds)
        expected = int(vstream.frames or 0)
        rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
        size_tag = container.metadata.get(_SIZE_TAG)

    if not frames:
        raise MediaError(path, "contains no decodable video frames")
    if expected and len(frames) < expected - _MISSING_FRAME_TOLERANCE:
        raise MediaError(path, f"is truncated: the container lists {expected} frames, {len(frames)} decoded")
    if rate:
        fps = float(rate)
    elif len(frames) > 1 and all(t is not None for t in times):
        fps = 1.0 / float(np.median(np.diff(np.asarray(times, np.float64))))
    else:
        raise MediaError(path, "has no usable frame rate")
    if any(t is None for t in times):  # no timestamps at all: assume constant rate
        times = [i / fps for i in range(len(frames))]
    stamps = np.asarray(times, np.float64)
    video = np.stack(frames)
    if np.any(np.diff(stamps) < 0):  # decoders emit presentation order; guard odd muxers anyway
        order = np.argsort(stamps, kind="stable")
        stamps, video = stamps[order], video[order]
    if size_tag:
        try:
            width, height = (int(v) for v in str(size_tag).split("x"))
        except ValueError:
            width, height = video.shape[2], video.shape[1]
        video = np.ascontiguousarray(video[:, : max(1, height), : max(1, width)])

    audio = None
    if astream is not None:
        audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
        audio = _trim_padding(audio, audio_declared, sample_rate)
        if audio_start is not None:
            shift = int(round((audio_start - stamps[0]) * sample_rate))
            if shift > 0:
                audio = np.concatenate([np.zeros(shift, np.float32), audio])
            elif shift < 0:
                audio = audio[-shift:]

    stamps = stamps - stamps[0]
    if target_fps is not None:
        index = nearest_frame_indices(stamps, fps, target_fps)
        video = video[index]
        stamps = np.arange(index.size, dtype=np.float64) / target_fps
        fps = target_fps
    return Video(frames=video, fps=fps, audio=audio, timestamps=stamps, sample_rate=sample_rate)
