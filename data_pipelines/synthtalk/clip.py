"""One SynthTalk clip: speech, the face that says it, and every ground truth.

`generate_clip` is a pure function of (variant, split, speaker index, clip index): clips can be
made in any order, in any process, and come out byte-identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.synthtalk import face, motion, render, speech
from data_pipelines.synthtalk.channel import apply_channel
from data_pipelines.synthtalk.speakers import Speaker, clip_seed_sequence, make_speaker
from data_pipelines.synthtalk.specs import EMOTIONS, VariantSpec


@dataclasses.dataclass(frozen=True)
class Clip:
    clip_id: str
    speaker: Speaker
    emotion: str
    intensity: int  # 0 = unlabelled (voxceleb_like), 1..3 for mead_like
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray  # float32 (N,), 16 kHz
    landmarks_2d: np.ndarray  # float32 (T, 68, 2), image pixels
    landmarks_3d: np.ndarray  # float32 (T, 68, 3), posed, face units (|p36-p45| = 1 on the mean face)
    landmarks_frontal: np.ndarray  # float32 (T, 68, 3), articulated face before the head pose
    head_euler: np.ndarray  # float32 (T, 3), (yaw, pitch, roll) radians
    head_rotation: np.ndarray  # float32 (T, 3, 3)
    head_translation: np.ndarray  # float32 (T, 3)
    visemes: np.ndarray  # float32 (T, 4), face.VISEME_NAMES
    expression: np.ndarray  # float32 (T, 5), face.EXPRESSION_NAMES
    alignment: speech.Alignment


def _rngs(sequence: np.random.SeedSequence, count: int) -> list[np.random.Generator]:
    # Children built from the spawn key, not sequence.spawn(): spawn() advances the parent, so the
    # same SeedSequence object would give different streams on a second call.
    return [
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(sequence.entropy, spawn_key=(*sequence.spawn_key, i))))
        for i in range(count)
    ]


def synthesize_clip(
    spec: VariantSpec,
    speaker: Speaker,
    emotion: str,
    intensity: int,
    sequence: np.random.SeedSequence,
    clip_id: str = "",
    motion_sequence: np.random.SeedSequence | None = None,
) -> Clip:
    """Generates a clip from explicit seeds.

    Speech and face motion draw from independent child streams of `sequence`; passing another
    `motion_sequence` keeps the utterance (audio, mouth) and draws a different head motion and
    blinks, which is how the one-to-many nature of head motion is exercised.
    """
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
    speech_rng, synth_rng, motion_rng, channel_rng = _rngs(sequence, 4)
    if motion_sequence is not None:
        motion_rng = np.random.Generator(np.random.PCG64(motion_sequence))
    blink_rng, pose_rng, brow_rng = _rngs(np.random.SeedSequence(motion_rng.integers(2**63)), 3)

    prosody = speech.emotion_prosody(emotion, max(intensity, 1)) if emotion != "neutral" else speech.Prosody()
    duration = spec.num_frames / spec.fps
    alignment = speech.sample_utterance(speech_rng, duration, speaker.voice, prosody)
    voice = speech.synthesize(
        alignment, speaker.voice, synth_rng, prosody, sample_rate=spec.sample_rate, num_samples=spec.num_samples
    ).waveform
    audio = apply_channel(voice, speaker.channel, channel_rng, spec.sample_rate)

    visemes = motion.viseme_track(alignment, spec.num_frames, spec.fps)
    blink = motion.blink_track(blink_rng, spec.num_frames, spec.fps)
    expression = motion.expression_track(emotion, intensity, blink, brow_rng)
    energy = motion.frame_energy(audio, spec.num_frames, spec.fps, spec.sample_rate)
    euler, rotation, translation = motion.head_pose(
        pose_rng, speaker.style, energy, spec.fps, gain=motion.EMOTION_MOTION_GAIN[emotion]
    )

    frontal = face.articulate(speaker.neutral_shape(), visemes, expression)
    posed = face.apply_pose(frontal, rotation, translation)
    landmarks_2d = face.project(posed, spec.image_size)
    frames = render.render_frames(frontal, rotation, translation, speaker.appearance, spec.image_size)
    return Clip(
        clip_id=clip_id,
        speaker=speaker,
        emotion=emotion,
        intensity=intensity,
        frames=frames,
        audio=audio,
        landmarks_2d=landmarks_2d.astype(np.float32),
        landmarks_3d=posed.astype(np.float32),
        landmarks_frontal=frontal.astype(np.float32),
        head_euler=euler,
        head_rotation=rotation,
        head_translation=translation,
        visemes=visemes,
        expression=expression,
        alignment=alignment,
    )


def generate_clip(spec: VariantSpec, split: str, speaker_index: int, clip_index: int) -> Clip:
    """Clip `clip_index` that speaker `speaker_index` records in `split` of the variant."""
    if speaker_index not in spec.speakers(split):
        raise ValueError(f"speaker {speaker_index} is not in the {split!r} split of {spec.name}")
    conditions = spec.clip_conditions(split)
    if not 0 <= clip_index < len(conditions):
        raise ValueError(f"clip_index must be in [0, {len(conditions)}) for {split!r}, got {clip_index}")
    emotion, intensity = conditions[clip_index]
    speaker = make_speaker(spec.seed, spec.kind, speaker_index)
    clip_id = f"{speaker.speaker_id}/{split}/{emotion}_{intensity}/{clip_index:04d}"
    sequence = clip_seed_sequence(spec.seed, spec.kind, split, speaker_index, clip_index)
    return synthesize_clip(spec, speaker, emotion, intensity, sequence, clip_id=clip_id)

