import subprocess
import sys
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import python_speech_features as psf
from scipy.io import wavfile

from macl_jax.media import audio_features as af
from macl_jax.media.samples import arctic_speech_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def speech_like(num_samples: int, seed: int = 0, amplitude: float = 0.5) -> np.ndarray:
    """A rising chirp with a slow amplitude envelope plus white noise, float64 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)
    x = envelope * np.sin(2 * np.pi * (120 * t + 900 * t**2)) + 0.1 * rng.standard_normal(num_samples)
    return amplitude * x / np.abs(x).max()


def librosa_log_mel(x: np.ndarray) -> np.ndarray:
    magnitude = np.abs(librosa.stft(x, n_fft=320, hop_length=160, window="hann", center=True, pad_mode="reflect"))
    mel = librosa.filters.mel(sr=16000, n_fft=320, fmin=90, fmax=7600, n_mels=80) @ magnitude
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 16
    return np.clip((db + 100) / 100, 0, 1).T


def loop_windows(mel: np.ndarray, centre: int, before: int, rows: int) -> np.ndarray:
    """The reference window rule read literally (docs/decisions.md#audio-features): slice, left-pad
    with row 0, right-pad with the last row."""
    start = 4 * centre - before
    out = list(mel[max(start, 0) : start + rows])
    out = [mel[0]] * max(-start, 0) + out
    while len(out) < rows:
        out.append(mel[-1])
    return np.stack(out)


def test_shipped_filterbank_is_librosas():
    expected = librosa.filters.mel(sr=16000, n_fft=320, fmin=90, fmax=7600, n_mels=80)
    fb = af.mel_filterbank()
    assert fb.dtype == np.float32 and fb.shape == (80, 161)
    np.testing.assert_allclose(fb, expected, rtol=1e-6, atol=0)
    assert not fb.flags.writeable


@pytest.mark.filterwarnings("ignore:n_fft=320 is too large")  # librosa's note on the 161-sample minimum
@pytest.mark.parametrize("num_samples", [161, 1759, 16000 * 2 + 77])
def test_log_mel_matches_librosa_pipeline(num_samples):
    x = speech_like(num_samples, seed=num_samples)
    out = af.log_mel(x)
    expected = librosa_log_mel(x)
    assert out.dtype == np.float32
    assert out.shape == expected.shape == (num_samples // 160 + 1, 80)
    assert np.abs(out - expected).max() < 1e-5
    # float32 input is computed the same way (upcast), not at f32 precision.
    assert np.abs(af.log_mel(x.astype(np.float32)) - librosa_log_mel(x.astype(np.float32))).max() < 1e-5
    # The signal must exercise the unclipped range, or the comparison would be vacuous.
    assert 0.2 < np.mean((expected > 0) & (expected < 1))


def test_silence_gives_zero_features_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = af.log_mel(np.zeros(16000, np.float32))
        cep = af.mfcc(np.zeros(4000))
    assert out.shape == (101, 80) and np.all(out == 0)
    # Zero energy is replaced by float64 eps before the log, as python_speech_features does.
    np.testing.assert_allclose(cep, psf.mfcc(np.zeros(4000), 16000), rtol=1e-10, atol=1e-10)
    assert np.all(np.isfinite(cep)) and cep[0, 0] == pytest.approx(np.log(np.finfo(float).eps))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(waveform=np.zeros(16000), sample_rate=44100), "librosa.resample"),
        (dict(waveform=np.zeros((2, 16000))), "mono"),
        (dict(waveform=np.r_[np.zeros(1000), np.nan]), "NaN"),
        (dict(waveform=np.zeros(16000, np.int16)), "32768"),
        (dict(waveform=np.full(16000, 1000.0)), "integer PCM"),
        (dict(waveform=np.zeros(0)), "empty or too short"),
        (dict(waveform=np.zeros(160)), "at least 161"),
    ],
)
def test_log_mel_rejects_bad_input_and_names_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        af.log_mel(**kwargs)


def test_bad_mfcc_input_is_rejected_too():
    with pytest.raises(ValueError, match="16000 Hz"):
        af.mfcc(np.zeros(1000), sample_rate=8000)
    with pytest.raises(ValueError, match="mfcc_windows: waveform has 0 samples"):
        af.mfcc_windows(np.zeros(0), 3)
    with pytest.raises(ValueError, match="variant"):
        af.mfcc_windows(np.zeros(6400), 3, variant="reflect")


def test_jax_log_mel_matches_numpy_batched_and_jitted():
    import jax

    from macl_jax.media.audio_features_jax import log_mel_jax

    x = np.stack([speech_like(4123, seed=1), speech_like(4123, seed=2, amplitude=0.01)]).astype(np.float32)
    out = np.asarray(jax.jit(log_mel_jax)(x[None]))
    expected = np.stack([af.log_mel(row) for row in x])
    assert out.shape == (1, *expected.shape)
    assert np.abs(out[0] - expected).max() < 1e-5
    with pytest.raises(ValueError, match="at least 161"):
        log_mel_jax(np.zeros((2, 100), np.float32))


def test_frame_counts():
    for n in (0, 159, 160, 16000, 16639, 16640):
        assert af.num_mel_frames(n) == n // 160 + 1
    assert af.num_video_frames(16000) == 25
    assert af.num_video_frames(16639) == 25 and af.num_video_frames(16640) == 26
    assert af.num_video_frames(48000, fps=30, sample_rate=48000) == 30
    # Whole-frame audio always covers every window centre of frame_windows.
    x = speech_like(16640 + 100)
    mel = af.log_mel(x)
    assert af.frame_windows(mel, af.num_video_frames(len(x))).shape == (26, 20, 80)


def test_frame_windows_against_explicit_loop_at_both_ends():
    mel = np.arange(103 * 3, dtype=np.float32).reshape(103, 3)  # distinct rows: indices are readable
    num_frames = 26  # windows for t = 23..25 run past row 102
    out = af.frame_windows(mel, num_frames)
    expected = np.stack([loop_windows(mel, t, 8, 20) for t in range(num_frames)])
    np.testing.assert_array_equal(out, expected)
    rows = out[:, :, 0] / 3
    np.testing.assert_array_equal(rows[0], [0] * 8 + list(range(12)))  # t=0 repeats row 0 (edge padding)
    np.testing.assert_array_equal(rows[5], np.arange(12, 32))  # [4(t-2), 4(t+3))
    np.testing.assert_array_equal(rows[25], list(range(92, 103)) + [102] * 9)
    # Rows 8..11 of each window are the centre frame's own 4 mel rows.
    np.testing.assert_array_equal(out[2:25, 8:12], mel[8:100].reshape(23, 4, 3))


def test_windows_at_arbitrary_centres_and_errors():
    mel = af.log_mel(speech_like(16000))
    full = af.frame_windows(mel, 25)
    sfe_centres = np.arange(4, 25, 3)  # SFE: stride 3
    np.testing.assert_array_equal(af.windows_at(mel, sfe_centres), full[sfe_centres])
    assert af.windows_at(mel, np.array([27])).shape == (1, 20, 80)  # starts at row 100 of 101
    with pytest.raises(ValueError, match="num_video_frames"):
        af.windows_at(mel, np.array([28]))  # starts at row 104: no audio at all
    with pytest.raises(ValueError, match="integer"):
        af.windows_at(mel, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=">= 0"):
        af.windows_at(mel, np.array([-1]))


@pytest.mark.parametrize("num_samples", [9000, 16000 + 333])
def test_mfcc_matches_python_speech_features(num_samples):
    x = speech_like(num_samples, seed=3)
    out = af.mfcc(x)
    expected = psf.mfcc(x, 16000)
    assert out.shape == expected.shape == (1 + int(np.ceil((num_samples - 400) / 160)), 13)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)
    sr, y = wavfile.read(arctic_speech_file())  # real speech too
    y = librosa.resample(y.astype(np.float64) / 32768.0, orig_sr=sr, target_sr=16000)
    np.testing.assert_allclose(af.mfcc(y), psf.mfcc(y, 16000), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("num_samples", [1, 399, 400, 401, 561])
def test_mfcc_short_signals_frame_like_the_reference(num_samples):
    x = np.random.default_rng(num_samples).uniform(-1, 1, num_samples)
    np.testing.assert_allclose(af.mfcc(x), psf.mfcc(x, 16000), rtol=1e-9, atol=1e-9)


def reference_zero_pad_windows(x: np.ndarray, num_frames: int) -> np.ndarray:
    m = psf.mfcc(np.concatenate([np.zeros(1920), x, np.zeros(1920)]), 16000)
    out = []
    for t in range(num_frames):
        w = list(m[4 * t : 4 * t + 28, 1:])
        while len(w) < 28:
            w.append(m[-1, 1:])
        out.append(np.stack(w))
    return np.stack(out)


def reference_edge_pad_windows(x: np.ndarray, num_frames: int) -> np.ndarray:
    m = psf.mfcc(x, 16000)
    left, right = m[:12], m[-16:]
    m = np.insert(m, 0, left, axis=0)
    m = np.insert(m, -1, right, axis=0)
    return np.stack([m[4 * t : 4 * t + 28, 1:] for t in range(num_frames)])


@pytest.mark.parametrize("variant", ["zero_pad", "edge_pad"])
def test_mfcc_windows_against_reference_loops(variant):
    num_frames = 30
    x = speech_like(640 * num_frames, seed=4)
    out = af.mfcc_windows(x, num_frames, variant=variant)
    reference = reference_zero_pad_windows if variant == "zero_pad" else reference_edge_pad_windows
    expected = reference(x, num_frames)
    assert out.dtype == np.float32 and out.shape == (num_frames, 28, 12)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Rows 12..15 of window t are the unpadded MFCC rows 4t..4t+3 (c0 dropped) in both variants.
    plain = af.mfcc(x)[:, 1:]
    last = (len(plain) - 4) // 4
    np.testing.assert_allclose(out[:last, 12:16].reshape(-1, 12), plain[: 4 * last], rtol=1e-5, atol=1e-5)


def test_numpy_module_does_not_import_jax():
    # Data-loader workers import this module; pulling in jax there costs memory and start-up time.
    code = (
        "import sys, macl_jax.media.audio_features as af, numpy as np\n"
        "af.frame_windows(af.log_mel(np.zeros(1600)), 2); af.mfcc_windows(np.zeros(1280), 2)\n"
        "assert not [m for m in sys.modules if m == 'jax' or m.startswith('jax.')]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
