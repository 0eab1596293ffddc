"""Audio features shared by every model: the MACL log-mel and the peer papers' MFCC recipe.

Numpy only: these run inside grain data-loader workers, so this module must never import jax
(the on-device log-mel lives in `audio_features_jax.py`).

MACL log-mel (100 frames/s, 80 bands in [0, 1]):
  16 kHz mono float in [-1, 1], no pre-emphasis or dither; STFT with n_fft 320, hop 160, periodic
  Hann, reflect-padded by 160 at both ends (floor(len/160) + 1 frames); the librosa Slaney mel
  filterbank (90-7600 Hz) applied to the *magnitude*; dB = 20 log10(max(1e-5, mel)) - 16;
  S = clip((dB + 100) / 100, 0, 1).

Peer MFCC (python_speech_features.mfcc defaults, 100 frames/s, 13 cepstra):
  pre-emphasis 0.97; 400-sample rectangular frames every 160 samples, the tail zero-padded;
  power spectrum |rfft_512|^2 / 512; 26 triangular mel filters with integer FFT-bin edges over
  0-8000 Hz; log; orthonormal DCT-II; sinusoidal lifter 22; c0 replaced by log frame energy.

Video frame t at 25 fps owns feature rows [4t, 4t + 4). Windows are centred on those rows.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np

SAMPLE_RATE = 16000
FEATURE_RATE = 100  # feature rows per second for both recipes (hop 160 at 16 kHz)

MEL_N_FFT = 320
MEL_HOP = 160
MEL_N_BANDS = 80
MEL_FMIN = 90.0
MEL_FMAX = 7600.0
MEL_WINDOW = 20  # rows per video frame window: video frames t-2 .. t+2

MFCC_FRAME = 400
MFCC_HOP = 160
MFCC_N_FFT = 512
MFCC_N_FILTERS = 26
MFCC_N_CEPSTRA = 13
MFCC_PREEMPHASIS = 0.97
MFCC_LIFTER = 22
MFCC_PAD_SAMPLES = 1920  # 0.12 s = 12 MFCC rows = 3 video frames at 25 fps
MFCC_WINDOW = 28  # rows per video frame window: video frames t-3 .. t+3

# Beyond this peak the input is almost certainly integer PCM cast to float (|x| up to 32768),
# not a [-1, 1] waveform with a little resampling overshoot.
_MAX_ABS_AMPLITUDE = 2.0

_ASSETS = Path(__file__).resolve().parent / "assets"
MEL_FILTERBANK_FILE = _ASSETS / "mel_filterbank_16k_320_80_90_7600.npy"

_HOW_TO_LOAD = (
    "load or resample to 16 kHz mono float with librosa.load(path, sr=16000, mono=True) "
    "or librosa.resample(y, orig_sr=sr, target_sr=16000)"
)


@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """The (80, 161) float32 Slaney mel filterbank, read-only, loaded once per process.

    It is `librosa.filters.mel(sr=16000, n_fft=320, fmin=90, fmax=7600, n_mels=80)`, shipped as a
    file so that data workers need not import librosa; regenerate it with exactly that call.
    """
    if not MEL_FILTERBANK_FILE.is_file():
        raise FileNotFoundError(
            f"mel filterbank asset missing: {MEL_FILTERBANK_FILE}. It must be installed as package data; "
            "regenerate it with librosa.filters.mel(sr=16000, n_fft=320, fmin=90, fmax=7600, n_mels=80)"
        )
    fb = np.load(MEL_FILTERBANK_FILE)
    if fb.shape != (MEL_N_BANDS, MEL_N_FFT // 2 + 1) or fb.dtype != np.float32:
        raise ValueError(f"{MEL_FILTERBANK_FILE} holds {fb.dtype} {fb.shape}, expected float32 (80, 161)")
    fb.setflags(write=False)
    return fb


def _checked_waveform(waveform: np.ndarray, sample_rate: int, min_samples: int, what: str) -> np.ndarray:
    """Validates a mono float waveform and returns it as float64 (features are computed in f64)."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"{what}: sample_rate={sample_rate}, but the features are defined at 16000 Hz; {_HOW_TO_LOAD}")
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise ValueError(
            f"{what}: waveform must be 1-D mono, got shape {x.shape}; average the channel axis "
            "(e.g. librosa.to_mono for channels-first audio) or take one channel"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{what}: waveform has dtype {x.dtype}, expected float in [-1, 1]; "
            f"convert integer PCM (int16: x / 32768.0) or {_HOW_TO_LOAD}"
        )
    if x.size < min_samples:
        raise ValueError(
            f"{what}: waveform has {x.size} samples, needs at least {min_samples} "
            f"({min_samples / SAMPLE_RATE * 1000:.1f} ms at 16 kHz); the audio file is empty or too short"
        )
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: waveform contains NaN or Inf samples; check the decoder or the resampler output")
    peak = np.abs(x).max()
    if peak > _MAX_ABS_AMPLITUDE:
        raise ValueError(
            f"{what}: waveform peak |x| = {peak:.4g}, expected floats in [-1, 1]; "
            f"this looks like integer PCM cast to float (divide int16 by 32768.0) -- {_HOW_TO_LOAD}"
        )
    return x


def num_mel_frames(num_samples: int) -> int:
    """Log-mel rows for a waveform of `num_samples` samples: floor(n / 160) + 1."""
    return int(num_samples) // MEL_HOP + 1


def num_video_frames(num_samples: int, fps: int = 25, sample_rate: int = SAMPLE_RATE) -> int:
    """Whole video frames covered by `num_samples` audio samples: floor(n * fps / sample_rate)."""
    if num_samples < 0 or fps <= 0 or sample_rate <= 0:
        raise ValueError(
            f"num_video_frames: need num_samples >= 0 and positive rates, got {num_samples}, {fps}, {sample_rate}"
        )
    return int(num_samples) * int(fps) // int(sample_rate)


def _periodic_hann(n: int) -> np.ndarray:
    # Periodic (DFT-even) Hann, as scipy.signal.get_window('hann', n) and librosa use.
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _spectral_to_feature(mel: np.ndarray) -> np.ndarray:
    # The floor is applied before the log, so silence yields -116 dB -> 0 without log(0) warnings.
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - 16.0
    return np.clip((db + 100.0) / 100.0, 0.0, 1.0)


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MACL log-mel features of a 16 kHz mono float waveform: (floor(len/160) + 1, 80) float32 in [0, 1]."""
    x = _checked_waveform(waveform, sample_rate, MEL_N_FFT // 2 + 1, "log_mel")
    pad = MEL_N_FFT // 2
    padded = np.pad(x, pad, mode="reflect")  # reflect needs len > pad: guaranteed by min_samples
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL_N_FFT)[::MEL_HOP]
    magnitude = np.abs(np.fft.rfft(frames * _periodic_hann(MEL_N_FFT), axis=-1))
    mel = magnitude @ mel_filterbank().astype(np.float64).T
    return _spectral_to_feature(mel).astype(np.float32)


def _rows_per_video_frame(fps: int) -> int:
    if fps <= 0 or FEATURE_RATE % fps:
        raise ValueError(
            f"fps={fps}: features run at {FEATURE_RATE} rows/s, so fps must divide {FEATURE_RATE} (e.g. 25)"
        )
    return FEATURE_RATE // fps


def _gather_rows(features: np.ndarray, starts: np.ndarray, length: int, what: str) -> np.ndarray:
    """features[start : start + length] for every start, indices clamped to [0, rows - 1].

    Clamping repeats the last row when a window runs past the end (the reference behaviour) and
    row 0 when it starts before the beginning (edge padding).
    """
    rows = features.shape[0]
    if rows == 0:
        raise ValueError(f"{what}: the feature array has no rows")
    late = starts >= rows
    if late.any():
        raise ValueError(
            f"{what}: a window starts at row {int(starts[late][0])} but the features have only {rows} rows "
            f"({rows / FEATURE_RATE:.2f} s); the video has more frames than its audio covers -- "
            "limit frames to num_video_frames(len(audio))"
        )
    index = np.clip(starts[:, None] + np.arange(length)[None, :], 0, rows - 1)
    return features[index]


def windows_at(mel: np.ndarray, centres: np.ndarray, fps: int = 25, window: int = MEL_WINDOW) -> np.ndarray:
    """Mel windows centred on the given video frames: (len(centres), window, bands), same dtype as `mel`.

    With the defaults, the window for video frame t is mel rows [4(t-2), 4(t+3)). Rows past the end
    repeat the last row (as the MACL loaders do). Rows before 0 (t < 2) repeat row 0: the reference
    loaders never ask for t < 2, and edge padding keeps those windows well defined.
    """
    mel = np.asarray(mel)
    if mel.ndim != 2:
        raise ValueError(f"windows_at: mel must be (frames, bands), got shape {mel.shape}")
    centres = np.asarray(centres)
    if centres.ndim != 1 or not np.issubdtype(centres.dtype, np.integer):
        raise ValueError(
            f"windows_at: centres must be a 1-D integer array of video-frame indices, "
            f"got {centres.dtype} {centres.shape}"
        )
    if (centres < 0).any():
        raise ValueError(f"windows_at: video-frame centres must be >= 0, got {int(centres.min())}")
    per_frame = _rows_per_video_frame(fps)
    if window % per_frame or (window // per_frame) % 2 == 0:
        raise ValueError(
            f"windows_at: window={window} rows must span an odd number of video frames of {per_frame} rows (e.g. 20)"
        )
    starts = per_frame * (centres.astype(np.int64) - (window // per_frame) // 2)
    return _gather_rows(mel, starts, window, "windows_at")


def frame_windows(mel: np.ndarray, num_video_frames: int, fps: int = 25, window: int = MEL_WINDOW) -> np.ndarray:
    """One mel window per video frame 0 .. num_video_frames - 1: (num_video_frames, window, bands)."""
    return windows_at(mel, np.arange(int(num_video_frames)), fps=fps, window=window)


@functools.lru_cache(maxsize=1)
def _mfcc_filterbank() -> np.ndarray:
    """python_speech_features.get_filterbanks(26, 512, 16000, 0, 8000), (26, 257) float64."""
    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel):
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    points = np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), MFCC_N_FILTERS + 2)
    # Edges snap down to integer FFT bins exactly as the reference does (note the nfft + 1).
    edges = np.floor((MFCC_N_FFT + 1) * mel_to_hz(points) / SAMPLE_RATE)
    bins = np.arange(MFCC_N_FFT // 2 + 1, dtype=np.float64)[None, :]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # coincident edges give empty ramps
        rising = np.where((bins >= lo) & (bins < mid), (bins - lo) / (mid - lo), 0.0)
        falling = np.where((bins >= mid) & (bins < hi), (hi - bins) / (hi - mid), 0.0)
    fb = rising + falling
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=1)
def _mfcc_dct_lifter() -> np.ndarray:
    """(26, 13) orthonormal DCT-II (scipy norm='ortho') truncated to 13 cepstra, times the lifter."""
    n = np.arange(MFCC_N_FILTERS)[:, None]
    k = np.arange(MFCC_N_CEPSTRA)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * MFCC_N_FILTERS)) * np.sqrt(2.0 / MFCC_N_FILTERS)
    basis[:, 0] /= np.sqrt(2.0)
    lift = 1.0 + (MFCC_LIFTER / 2.0) * np.sin(np.pi * np.arange(MFCC_N_CEPSTRA) / MFCC_LIFTER)
    out = basis * lift[None, :]
    out.setflags(write=False)
    return out


def mfcc(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """python_speech_features.mfcc(waveform, 16000) with its defaults, reimplemented: (frames, 13) float64.

    frames = 1 if len <= 400 else 1 + ceil((len - 400) / 160). Zero frame / filter energies are
    replaced by float64 eps before the log, as the reference does, so silence stays finite.
    """
    x = _checked_waveform(waveform, sample_rate, 1, "mfcc")
    x = np.concatenate([x[:1], x[1:] - MFCC_PREEMPHASIS * x[:-1]])
    n = x.size
    num_frames = 1 if n <= MFCC_FRAME else 1 + -(-(n - MFCC_FRAME) // MFCC_HOP)
    padded = np.zeros((num_frames - 1) * MFCC_HOP + MFCC_FRAME)
    padded[:n] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, MFCC_FRAME)[::MFCC_HOP]
    power = np.abs(np.fft.rfft(frames, MFCC_N_FFT, axis=-1)) ** 2 / MFCC_N_FFT
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0.0, eps, energy)
    bands = power @ _mfcc_filterbank().T
    bands = np.where(bands == 0.0, eps, bands)
    cepstra = np.log(bands) @ _mfcc_dct_lifter()
    cepstra[:, 0] = np.log(energy)
    return cepstra


def mfcc_windows(
    waveform: np.ndarray,
    num_video_frames: int,
    variant: Literal["zero_pad", "edge_pad"] = "zero_pad",
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Per-video-frame MFCC windows: (num_video_frames, 28, 12) float32, c0 (log energy) dropped.

    Window t covers video frames t-3 .. t+3 (4 rows each); rows 12..15 belong to frame t itself.
    - "zero_pad" (ATVGnet / EVP / E20 inference): 1920 zero samples are added to both ends of the
      waveform before the MFCC, and window t is rows [4t, 4t + 28). The last window is one row
      short for whole-frame audio; that row repeats the last one.
    - "edge_pad" (E20 training loader): the MFCC of the unpadded waveform gets a copy of its first
      12 rows prepended and a copy of its last 16 rows inserted before its final row; window t is
      again rows [4t, 4t + 28).
    """
    t = np.arange(int(num_video_frames))
    if variant == "zero_pad":
        x = _checked_waveform(waveform, sample_rate, 1, "mfcc_windows")
        zeros = np.zeros(MFCC_PAD_SAMPLES)
        feats = mfcc(np.concatenate([zeros, x, zeros]), sample_rate)
    elif variant == "edge_pad":
        m = mfcc(waveform, sample_rate)
        lead = MFCC_PAD_SAMPLES // MFCC_HOP
        tail = MFCC_WINDOW - 4 * 3  # 16 rows: the frame-t block plus frames t+1 .. t+3
        feats = np.concatenate([m[:lead], m[:-1], m[-tail:], m[-1:]])
    else:
        raise ValueError(f"mfcc_windows: variant={variant!r}, expected 'zero_pad' or 'edge_pad'")
    windows = _gather_rows(feats[:, 1:], _rows_per_video_frame(25) * t, MFCC_WINDOW, "mfcc_windows")
    return windows.astype(np.float32)
