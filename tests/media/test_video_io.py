import fractions
import os

import av
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from macl_jax.media import video_io
from macl_jax.media.video_io import (
    MediaError,
    nearest_frame_indices,
    read_audio,
    read_video,
    write_video,
    write_wav,
)

SR = 16000


def moving_gradient(t: int, h: int, w: int) -> np.ndarray:
    """Smooth, slowly moving colour pattern: easy for H.264, but every frame differs."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    frames = []
    for i in range(t):
        r = 128 + 90 * np.sin(xx / 7.0 + i / 4.0)
        g = 128 + 90 * np.cos(yy / 9.0 - i / 5.0)
        b = 40 + 150 * (xx + yy) / (h + w)
        frames.append(np.stack([r, g, b], -1))
    return np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = envelope * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1130 * t + 1.0))
    return (x + 0.02 * rng.standard_normal(n)).astype(np.float32)


def aligned_lag(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 2048) -> int:
    """Lag (samples) that best aligns decoded[lag:] with reference, by cross-correlation."""
    corr = signal.correlate(decoded, reference, mode="full", method="fft")
    lags = signal.correlation_lags(decoded.size, reference.size, mode="full")
    window = np.abs(lags) <= max_lag
    return int(lags[window][np.argmax(corr[window])])


def aligned_correlation(decoded: np.ndarray, reference: np.ndarray, lag: int) -> float:
    decoded, reference = decoded[max(lag, 0) :], reference[max(-lag, 0) :]
    n = min(decoded.size, reference.size)
    return float(np.corrcoef(decoded[:n], reference[:n])[0, 1])


def yuv420p_round_trip(frames: np.ndarray) -> np.ndarray:
    """The colour conversion alone (swscale, no codec): the floor of any yuv420p round trip."""
    out = []
    for frame in frames:
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
        out.append(yuv.to_ndarray(format="rgb24"))
    return np.stack(out)


def level_frames(levels: np.ndarray, size: int = 32) -> np.ndarray:
    return np.broadcast_to(levels.astype(np.uint8)[:, None, None, None], (levels.size, size, size, 3)).copy()


def test_round_trip_frames_timing_and_audio(tmp_path):
    frames = moving_gradient(20, 64, 80)
    audio = speechlike(20 * SR // 25)
    path = write_video(tmp_path / "clip.mp4", frames, fps=25, audio=audio, sample_rate=SR)
    video = read_video(path, sample_rate=SR)

    assert video.frames.shape == frames.shape and video.frames.dtype == np.uint8
    assert video.fps == 25.0
    np.testing.assert_allclose(video.timestamps, np.arange(20) / 25, atol=1e-6)
    # Two losses: RGB -> yuv420p (halved chroma resolution; ~2.5 levels on this saturated
    # pattern) and H.264 itself. Bound the codec's share against the bare colour conversion.
    converted = yuv420p_round_trip(frames)
    codec_error = np.abs(video.frames.astype(np.float64) - converted)
    assert codec_error.mean() < 2.5  # measured 1.65 at crf 18
    error = video.frames.astype(np.float64) - frames
    assert 10 * np.log10(255**2 / np.mean(error**2)) > 35  # measured 36.9 dB

    assert video.audio.dtype == np.float32 and video.sample_rate == SR
    assert abs(video.audio.size - audio.size) <= 1024  # at most one AAC frame of padding
    # AAC encoders prepend ~1024 priming samples; MP4 edit lists tell the demuxer to drop them.
    # Align by cross-correlation anyway and require the residual lag to be below one AAC frame.
    lag = aligned_lag(video.audio, audio)
    assert abs(lag) < 1024
    assert aligned_correlation(video.audio, audio, lag) > 0.95


def test_crf_0_is_lossless_after_colour_conversion(tmp_path):
    frames = moving_gradient(5, 32, 48)
    video = read_video(write_video(tmp_path / "lossless.mp4", frames, crf=0))
    np.testing.assert_array_equal(video.frames, yuv420p_round_trip(frames))


def test_read_audio_from_mp4_matches_read_video(tmp_path):
    frames = moving_gradient(10, 32, 32)
    audio = speechlike(10 * SR // 25, seed=1)
    path = write_video(tmp_path / "a.mp4", frames, audio=audio)
    np.testing.assert_array_equal(read_audio(path), read_video(path).audio)


def test_30_fps_read_at_25_selects_nearest_frames(tmp_path):
    levels = 4 + 8 * np.arange(30)  # frame i is flat grey 4 + 8 i: decodable identity
    path = write_video(tmp_path / "mead.mp4", level_frames(levels), fps=30)

    native = read_video(path)
    assert native.fps == 30.0 and native.frames.shape[0] == 30
    np.testing.assert_allclose(native.timestamps, np.arange(30) / 30, atol=1e-6)

    video = read_video(path, target_fps=25)
    assert video.fps == 25.0 and video.frames.shape[0] == 25  # 25/30 of 30 frames
    np.testing.assert_allclose(video.timestamps, np.arange(25) / 25)
    decoded_index = np.round((video.frames.mean(axis=(1, 2, 3)) - 4) / 8).astype(int)
    # Source frame i is shown at i/30 s; output frame k at k/25 s takes the nearest: round(1.2 k).
    expected = np.floor(np.arange(25) * 30 / 25 + 0.5).astype(int)
    np.testing.assert_array_equal(decoded_index, expected)
    assert 3 not in decoded_index and 9 not in decoded_index
    np.testing.assert_allclose(expected / 30, video.timestamps, atol=0.5 / 30)


def test_nearest_frame_indices_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        source_fps = rng.uniform(10, 60)
        n = int(rng.integers(1, 80))
        # Variable frame rate: jittered, strictly increasing timestamps.
        ts = np.cumsum(np.r_[0.0, rng.uniform(0.5, 1.5, n - 1)]) / source_fps + 3.0
        target = rng.uniform(5, 70)
        got = nearest_frame_indices(ts, source_fps, target)
        rel = ts - ts[0]
        count = int(np.floor((rel[-1] + 1 / source_fps) * target + 1e-6))
        grid = np.arange(max(count, 1)) / target
        brute = np.array([np.argmin(np.abs(rel - g)) for g in grid])  # argmin: first = earlier on ties
        np.testing.assert_array_equal(got, brute)
    # Exact ties (25 -> 50 fps: every other output time is midway) go to the earlier frame.
    np.testing.assert_array_equal(nearest_frame_indices(np.arange(3) / 25, 25, 50), [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("shape", [(31, 45), (30, 45), (31, 44), (1, 1)])
def test_odd_frame_sizes_round_trip(tmp_path, shape):
    h, w = shape
    frames = moving_gradient(3, h, w)
    video = read_video(write_video(tmp_path / "odd.mp4", frames, fps=25))
    assert video.frames.shape == frames.shape
    assert video.audio is None  # no audio stream written
    if h * w > 1:
        assert np.abs(video.frames.astype(float) - frames).mean() < 8


def test_iterable_frames_and_fractional_rate(tmp_path):
    frames = moving_gradient(6, 24, 24)
    path = write_video(tmp_path / "gen.mov", (f for f in frames), fps=30000 / 1001)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == fractions.Fraction(30000, 1001)
    assert read_video(path).frames.shape == frames.shape


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing"])
def test_damaged_files_raise_media_error_naming_the_file(tmp_path, damage):
    good = write_video(tmp_path / "good.mp4", moving_gradient(25, 48, 48), audio=speechlike(SR))
    bad = tmp_path / f"bad_{damage}.mp4"
    data = good.read_bytes()
    if damage == "truncate":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif damage == "empty":
        bad.write_bytes(b"")
    with pytest.raises(MediaError) as info:
        read_video(bad)
    assert isinstance(info.value, ValueError)
    assert str(bad) in str(info.value)
    if damage == "garbage":
        assert isinstance(info.value.__cause__, av.FFmpegError)  # the av error is chained
    if damage == "truncate":  # either the decoder fails or fewer frames than listed come out
        assert isinstance(info.value.__cause__, av.FFmpegError) or "truncated" in str(info.value)
    if damage in ("truncate", "garbage"):
        assert "ffmpeg -i" in str(info.value)  # suggests re-encoding
    with pytest.raises(MediaError, match="bad_"):
        read_audio(bad)


def test_missing_streams(tmp_path):
    video_only = write_video(tmp_path / "v.mp4", moving_gradient(2, 16, 16))
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(video_only)
    wav = write_wav(tmp_path / "a.wav", speechlike(1600), SR)
    with pytest.raises(MediaError, match="no video stream"):
        read_video(wav)
    with_audio = write_video(tmp_path / "av.mp4", moving_gradient(2, 16, 16), audio=speechlike(1280))
    assert read_video(with_audio, decode_audio=False).audio is None


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


def test_invalid_frame_mid_stream_leaves_existing_file_untouched(tmp_path):
    path = write_video(tmp_path / "out.mp4", moving_gradient(4, 32, 32))
    before = path.read_bytes()

    def frames():
        yield from moving_gradient(12, 32, 32)
        yield np.zeros((32, 32, 3), np.float32)  # invalid element after 12 encoded frames

    with pytest.raises(ValueError, match=r"frames\[12\].*uint8"):
        write_video(path, frames(), audio=speechlike(SR))
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["out.mp4"]


def test_interrupt_during_encoding_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "new.mp4"
    real = video_io._rgb_frame
    calls = []

    def flaky(frame, pad_h, pad_w):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(frame, pad_h, pad_w)

    monkeypatch.setattr(video_io, "_rgb_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_video(path, moving_gradient(10, 32, 32))
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(frames=np.zeros((2, 8, 8, 3), np.float32)), r"frames\[0\].*uint8"),
        (dict(frames=np.zeros((2, 8, 8), np.uint8)), r"frames.*\(T, H, W, 3\)"),
        (dict(frames=np.zeros((0, 8, 8, 3), np.uint8)), "empty"),
        (dict(audio=np.array([0.0, np.nan], np.float32)), "audio.*NaN"),
        (dict(audio=np.zeros((2, 100), np.float32)), "audio.*mono"),
        (dict(audio=np.full(100, 2.0, np.float32)), r"audio.*\[-1, 1\]"),
        (dict(audio=np.zeros(100, np.int16)), "audio.*32768"),
        (dict(audio=np.zeros(100, np.float32), sample_rate=12345), "sample_rate"),
        (dict(fps=0), "fps"),
        (dict(crf=60), "crf"),
    ],
)
def test_write_video_validation(tmp_path, kwargs, match):
    args = dict(frames=np.zeros((2, 8, 8, 3), np.uint8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / "x.mp4", **args)
    assert _listing(tmp_path) == []
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "x.avi", np.zeros((1, 8, 8, 3), np.uint8))


def test_wav_round_trip_and_resampling(tmp_path):
    audio = speechlike(SR, seed=2)
    path = write_wav(tmp_path / "a.wav", audio, SR, subtype="FLOAT")
    data, rate = sf.read(path, dtype="float32")
    assert rate == SR
    np.testing.assert_array_equal(data, audio)  # FLOAT subtype is lossless
    np.testing.assert_array_equal(read_audio(path, SR), audio)

    pcm = write_wav(tmp_path / "b.wav", audio, SR)  # PCM_16 default: quantisation only
    np.testing.assert_allclose(read_audio(pcm, SR), audio, atol=1 / 32768 + 1e-7)

    # Downsampling by swresample against scipy's polyphase filter: same band-limited signal.
    down = read_audio(path, 8000)
    reference = signal.resample_poly(audio, 1, 2).astype(np.float32)
    assert abs(down.size - reference.size) <= 2
    lag = aligned_lag(down, reference, max_lag=16)
    assert abs(lag) <= 2
    assert aligned_correlation(down, reference, lag) > 0.99


def test_read_audio_m4a_written_with_pyav(tmp_path):
    audio = speechlike(SR, seed=3)
    path = tmp_path / "voxceleb_like.m4a"
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = SR, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    decoded = read_audio(path, SR)
    lag = aligned_lag(decoded, audio)
    assert abs(lag) < 1024
    assert aligned_correlation(decoded, audio, lag) > 0.95


def test_write_wav_keeps_old_file_when_replaced_target_is_directory(tmp_path):
    target = tmp_path / "dir.wav"
    os.mkdir(target)
    with pytest.raises(IsADirectoryError):
        write_wav(target, speechlike(100), SR)
    assert target.is_dir() and _listing(tmp_path) == ["dir.wav"]
