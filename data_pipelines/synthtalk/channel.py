"""The recording channel of a speaker: microphone colouration and room noise.

Real talking-head corpora record each speaker (each VoxCeleb2 video, each MEAD session) through one
set-up, so the channel is a stable part of how a speaker sounds. Each SynthTalk speaker gets a
smooth equaliser curve and a coloured noise floor; every clip draws fresh noise from them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_N_FFT = 1024


@dataclasses.dataclass(frozen=True)
class Channel:
    bell_hz: tuple[float, ...]  # centre frequencies of equaliser bells
    bell_db: tuple[float, ...]  # their gains
    bell_octaves: tuple[float, ...]  # their widths
    tilt_db_per_octave: float  # overall slope around 1 kHz
    highpass_hz: float  # microphone / room low cut
    noise_db: float  # noise floor, dB re full scale (RMS)
    noise_tilt_db_per_octave: float  # noise colour (negative: rumbling, positive: hissing)


def sample_channel(rng: np.random.Generator) -> Channel:
    count = 3
    return Channel(
        bell_hz=tuple(float(f) for f in np.exp(rng.uniform(np.log(150.0), np.log(6000.0), count))),
        bell_db=tuple(float(g) for g in rng.uniform(-6.0, 6.0, count)),
        bell_octaves=tuple(float(w) for w in rng.uniform(0.5, 1.5, count)),
        tilt_db_per_octave=float(rng.uniform(-2.0, 2.0)),
        highpass_hz=float(np.exp(rng.uniform(np.log(40.0), np.log(200.0)))),
        noise_db=float(rng.uniform(-62.0, -46.0)),
        noise_tilt_db_per_octave=float(rng.uniform(-4.0, 3.0)),
    )


def _gain_db(channel: Channel, freqs: np.ndarray) -> np.ndarray:
    octaves = np.log2(np.maximum(freqs, 1.0) / 1000.0)
    gain = channel.tilt_db_per_octave * octaves
    for hz, db, width in zip(channel.bell_hz, channel.bell_db, channel.bell_octaves):
        gain = gain + db * np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / hz) / (width / 2.355)) ** 2)
    # Second-order high-pass magnitude.
    ratio = freqs / channel.highpass_hz
    gain = gain + 10 * np.log10(ratio**4 / (1 + ratio**4) + 1e-12)
    return gain


def apply_channel(waveform: np.ndarray, channel: Channel, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """The waveform as recorded through `channel`: filtered, plus a fresh draw of its noise floor."""
    x = np.asarray(waveform, np.float64)
    n = len(x)
    size = 1 << int(np.ceil(np.log2(n + _N_FFT)))
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    # Zero-phase filtering over the whole clip: a smooth curve has a short impulse response, so
    # the padding to `size` keeps the circular wrap-around negligible.
    spectrum = np.fft.rfft(x, size) * 10 ** (_gain_db(channel, freqs) / 20)
    filtered = np.fft.irfft(spectrum, size)[:n]
    noise_spectrum = np.fft.rfft(rng.standard_normal(size)) * 10 ** (
        channel.noise_tilt_db_per_octave * np.log2(np.maximum(freqs, 20.0) / 1000.0) / 20
    )
    noise = np.fft.irfft(noise_spectrum, size)[:n]
    noise *= 10 ** (channel.noise_db / 20) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    out = filtered + noise
    peak = np.max(np.abs(out)) if n else 0.0
    if peak > 0.95:  # keep headroom instead of clipping
        out *= 0.95 / peak
    return out.astype(np.float32)
