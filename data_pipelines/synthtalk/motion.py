"""Per-frame motion tracks of a SynthTalk clip: mouth (visemes), face expression, head pose.

The mouth is a deterministic function of the phoneme track (what makes lips learnable from audio).
The head is the speaker's sway with a random phase, nods triggered by speech-energy onsets and a
slow drift: partly coupled to the audio and partly not, so one utterance admits many head motions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from data_pipelines.synthtalk import face, speech
from data_pipelines.synthtalk.speakers import MotionStyle

# Articulatory rate for smoothing (100 Hz, like the audio features' hop).
_RATE = 100.0
# Coarticulation: each articulator moves towards its targets with a finite speed; a Gaussian of
# ~35 ms spreads every target over its neighbours (anticipation and carry-over alike).
_COARTICULATION_SIGMA_S = 0.035
# Lips lead the sound they shape by about a frame (the visible gesture starts before the acoustic
# onset); the video shows the articulation of audio time t + lead.
DEFAULT_LEAD_S = 0.04

# Face expression per emotion at intensity 3 (brow_raise, brow_furrow, smile, eye_open, blink);
# intensities 1 and 2 scale it. Values follow the prototypical FACS descriptions.
EMOTION_EXPRESSION = {
    "neutral": (0.0, 0.0, 0.0, 0.0),
    "angry": (-0.6, 0.9, -0.3, 0.4),
    "disgusted": (-0.3, 0.6, -0.6, -0.4),
    "contempt": (0.1, 0.2, 0.35, -0.3),
    "fear": (0.8, 0.6, -0.4, 0.8),
    "happy": (0.25, 0.0, 0.9, -0.25),
    "sad": (0.35, 0.5, -0.7, -0.45),
    "surprised": (1.0, 0.0, 0.0, 1.0),
}
# The face follows the voice's intensity scaling; 0 (unlabelled) shows no emotion.
INTENSITY_SCALE = {0: 0.0, **speech.INTENSITY_FRACTION}
# Head-motion energy per emotion (aroused emotions move more).
EMOTION_MOTION_GAIN = {
    "neutral": 1.0, "angry": 1.35, "disgusted": 0.9, "contempt": 0.85,
    "fear": 1.2, "happy": 1.25, "sad": 0.7, "surprised": 1.3,
}


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Centre time of each video frame, where the audio features' window for the frame is centred."""
    return (np.arange(num_frames) + 0.5) / fps


def viseme_track(
    alignment: speech.Alignment, num_frames: int, fps: float, lead_s: float = DEFAULT_LEAD_S
) -> np.ndarray:
    """Articulation (T, 4) in face.VISEME_NAMES order, from the phoneme alignment."""
    duration = num_frames / fps
    n = int(np.ceil((duration + abs(lead_s)) * _RATE)) + 1
    t = np.arange(n) / _RATE
    targets = alignment.viseme_targets().astype(np.float64)
    index = np.clip(np.searchsorted(alignment.end, t, side="right"), 0, len(targets) - 1)
    steps = targets[index]
    # Stressed vowels open wider.
    stress = alignment.stress[index].astype(np.float64)
    steps[:, 0] *= 0.8 + 0.4 * stress
    smooth = ndimage.gaussian_filter1d(steps, _COARTICULATION_SIGMA_S * _RATE, axis=0, mode="nearest")
    # Bilabial closure is all-or-nothing: the lips must meet even in fast speech, so the smoothed
    # closure is sharpened back towards its target.
    closure = face.VISEME_NAMES.index("closure")
    smooth[:, closure] = np.clip(1.8 * smooth[:, closure] - 0.2, 0.0, 1.0)
    sample_t = np.clip(frame_times(num_frames, fps) + lead_s, 0.0, t[-1])
    out = np.stack([np.interp(sample_t, t, smooth[:, k]) for k in range(smooth.shape[1])], axis=-1)
    return out.astype(np.float32)


def blink_track(rng: np.random.Generator, num_frames: int, fps: float, rate_hz: float = 0.3) -> np.ndarray:
    """Blink closure in [0, 1] per frame: Poisson onsets, ~200 ms asymmetric lid movement."""
    duration = num_frames / fps
    onsets = []
    t = rng.exponential(1.0 / rate_hz) * rng.random()
    while t < duration:
        onsets.append(t)
        t += 0.25 + rng.exponential(1.0 / rate_hz)
    times = frame_times(num_frames, fps)
    blink = np.zeros(num_frames)
    for onset in onsets:
        close, reopen = 0.07, 0.14  # fast closing, slower opening
        rel = times - onset
        shape = np.where(rel < close, rel / close, 1.0 - (rel - close) / reopen)
        blink = np.maximum(blink, np.where((rel >= 0) & (rel < close + reopen), np.clip(shape, 0, 1), 0))
    return blink.astype(np.float32)


def expression_track(
    emotion: str, intensity: int, blink: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Expression (T, 5) in face.EXPRESSION_NAMES order: the emotion plus small brow movements."""
    if emotion not in EMOTION_EXPRESSION:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTION_EXPRESSION)}")
    base = np.asarray(EMOTION_EXPRESSION[emotion]) * INTENSITY_SCALE[intensity]
    num_frames = len(blink)
    out = np.zeros((num_frames, len(face.EXPRESSION_NAMES)))
    out[:, :4] = base
    # Emphatic brow flashes, independent of the audio.
    flashes = ndimage.gaussian_filter1d((rng.random(num_frames) < 0.01).astype(float), 3.0) * 6.0
    out[:, 0] += np.clip(flashes, 0, 0.4)
    out[:, 4] = blink
    out[:, :4] = np.clip(out[:, :4], -1.0, 1.0)
    out[:, 1] = np.clip(out[:, 1], 0.0, 1.0)
    return out.astype(np.float32)


def frame_energy(waveform: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
    """Log RMS energy (dB) per video frame."""
    hop = int(round(sample_rate / fps))
    padded = np.zeros(num_frames * hop)
    n = min(len(waveform), len(padded))
    padded[:n] = waveform[:n]
    rms = np.sqrt(np.mean(padded.reshape(num_frames, hop) ** 2, axis=1) + 1e-10)
    return 20 * np.log10(rms)


def head_pose(
    rng: np.random.Generator,
    style: MotionStyle,
    energy_db: np.ndarray,
    fps: float,
    gain: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (euler (T, 3) radians as yaw, pitch, roll; rotation (T, 3, 3); translation (T, 3)).

    sway: two sinusoids per axis near the speaker's tempo, with random phases per clip;
    nods: pitch driven by onsets of the speech energy (the audio-coupled part), with a random
    per-clip gain; drift: an Ornstein-Uhlenbeck walk.
    """
    num_frames = len(energy_db)
    t = np.arange(num_frames) / fps
    amplitude = np.asarray(style.amplitude) * gain
    euler = np.zeros((num_frames, 3))
    for axis in range(3):
        for harmonic, weight in ((1.0, 1.0), (rng.uniform(1.6, 2.6), 0.4)):
            freq = style.tempo_hz * harmonic * rng.uniform(0.8, 1.25)
            euler[:, axis] += amplitude[axis] * weight * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    # Nods: positive energy onsets push the head down (pitch) and it springs back.
    smooth = ndimage.gaussian_filter1d(np.maximum(energy_db, energy_db.max() - 50.0), 1.0)
    onset = np.maximum(np.diff(smooth, prepend=smooth[0]), 0.0) / 10.0
    kernel_t = np.arange(int(0.6 * fps)) / fps
    kernel = np.exp(-kernel_t / 0.15) * np.sin(2 * np.pi * kernel_t / 0.6 + 0.3)
    nod = np.convolve(onset, kernel)[:num_frames]
    euler[:, 1] += style.nod_gain * gain * rng.uniform(0.6, 1.4) * nod
    # Slow drift (discrete OU process).
    drift = np.zeros((num_frames, 3))
    state = rng.normal(0, style.drift, 3)
    for i in range(num_frames):
        state += -0.05 * state + rng.normal(0, style.drift * 0.15, 3)
        drift[i] = state
    euler += drift + np.asarray(style.rest_pose)
    euler = np.clip(euler, [-30.0, -20.0, -15.0], [30.0, 20.0, 15.0])
    radians = np.deg2rad(euler)
    rotation = face.euler_to_rotation(radians[:, 0], radians[:, 1], radians[:, 2])
    # The head translates with its sway (a body rocking) plus a little independent wander.
    translation = np.zeros((num_frames, 3))
    translation[:, 0] = 0.5 * style.translation * euler[:, 0] / max(amplitude[0], 1.0)
    translation[:, 1] = style.translation * 0.5 * np.sin(2 * np.pi * style.tempo_hz * 0.5 * t + rng.uniform(0, 2 * np.pi))
    translation[:, :2] += ndimage.gaussian_filter1d(rng.normal(0, style.translation, (num_frames, 2)), 6.0, axis=0)
    translation = np.clip(translation, -0.12, 0.12)
    return radians.astype(np.float32), rotation.astype(np.float32), translation.astype(np.float32)
