"""SynthTalk speakers: a face, a look, a voice and a personal way of moving the head.

A speaker is drawn from its own seed stream (dataset seed, kind, speaker index), so speaker 7 is the
same person whichever split, size or process generates it, and clips can be made in any order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.synthtalk import face, render, speech
from data_pipelines.synthtalk.channel import Channel, sample_channel

# Spawn-key roots: a speaker stream and a clip stream never collide.
_SPEAKER_STREAM = 0
_CLIP_STREAM = 1
_KIND_CODES = {"voxceleb_like": 0, "mead_like": 1}
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class MotionStyle:
    """How a speaker moves the head; angles in degrees, translation in face units (|p36-p45| = 1)."""

    amplitude: tuple[float, float, float]  # sway amplitude for (yaw, pitch, roll)
    tempo_hz: float  # main sway frequency
    nod_gain: float  # degrees of pitch per unit of speech-energy onset
    drift: float  # slow random-walk strength (degrees)
    translation: float  # sway of the head position
    rest_pose: tuple[float, float, float]  # habitual (yaw, pitch, roll) offset


@dataclasses.dataclass(frozen=True)
class Speaker:
    index: int
    speaker_id: str
    sex: str  # "female" | "male": drives the voice range and, mildly, the face width
    identity: np.ndarray  # (len(face.IDENTITY_NAMES),) shape coefficients
    appearance: render.Appearance
    voice: speech.Voice
    style: MotionStyle
    channel: Channel  # the speaker's recording set-up

    def neutral_shape(self) -> np.ndarray:
        return face.identity_shape(self.identity)

    def describe(self) -> dict:
        """JSON-able summary (stored in the dataset metadata)."""
        return {
            "index": self.index,
            "speaker_id": self.speaker_id,
            "sex": self.sex,
            "identity": dict(zip(face.IDENTITY_NAMES, np.round(self.identity, 4).tolist())),
            "voice": {k: _jsonable(v) for k, v in dataclasses.asdict(self.voice).items()},
            "style": {k: _jsonable(v) for k, v in dataclasses.asdict(self.style).items()},
            "channel": {k: _jsonable(v) for k, v in dataclasses.asdict(self.channel).items()},
        }


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return round(float(value), 5)
    if isinstance(value, np.integer):
        return int(value)
    return value


def speaker_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    sequence = np.random.SeedSequence(seed, spawn_key=(_SPEAKER_STREAM, _KIND_CODES[kind], index))
    return np.random.Generator(np.random.PCG64(sequence))


def clip_seed_sequence(seed: int, kind: str, split: str, speaker: int, clip: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(_CLIP_STREAM, _KIND_CODES[kind], _SPLIT_CODES[split], speaker, clip))


def sample_style(rng: np.random.Generator, kind: str) -> MotionStyle:
    # MEAD actors face the camera and move little; VoxCeleb interviewees move freely.
    scale = 0.45 if kind == "mead_like" else 1.0
    # Preferred axes: a Dirichlet split of a total amplitude, so some speakers mostly shake
    # (yaw) and others mostly nod (pitch) or tilt (roll).
    weights = rng.dirichlet([2.0, 2.0, 1.2])
    total = rng.uniform(6.0, 14.0) * scale
    amplitude = tuple(float(a) for a in total * weights)
    return MotionStyle(
        amplitude=amplitude,
        tempo_hz=float(rng.uniform(0.15, 0.6)),
        nod_gain=float(rng.uniform(2.0, 6.0) * scale),
        drift=float(rng.uniform(0.5, 2.5) * scale),
        translation=float(rng.uniform(0.01, 0.04) * scale),
        rest_pose=tuple(float(v) for v in rng.normal(0.0, [4.0, 3.0, 2.0]) * scale),
    )


def make_speaker(seed: int, kind: str, index: int) -> Speaker:
    """The speaker with global index `index` of a SynthTalk kind."""
    if kind not in _KIND_CODES:
        raise ValueError(f"unknown SynthTalk kind {kind!r}; choose one of {', '.join(_KIND_CODES)}")
    rng = speaker_rng(seed, kind, index)
    sex = "female" if rng.random() < 0.5 else "male"
    identity = np.clip(rng.standard_normal(len(face.IDENTITY_NAMES)), -2.5, 2.5)
    # Slightly narrower faces for female speakers: a weak, realistic face-voice correlation.
    identity[face.IDENTITY_NAMES.index("face_width")] += -0.4 if sex == "female" else 0.4
    appearance = render.sample_appearance(rng)
    voice = speech.sample_voice(rng, sex=sex)
    style = sample_style(rng, kind)
    channel = sample_channel(rng)
    prefix = "mead" if kind == "mead_like" else "vox"
    return Speaker(
        index=index,
        speaker_id=f"synth_{prefix}_{index:05d}",
        sex=sex,
        identity=identity,
        appearance=appearance,
        voice=voice,
        style=style,
        channel=channel,
    )
