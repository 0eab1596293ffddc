"""Motion tracks and whole clips: the mouth follows the phonemes, the head is one-to-many."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipelines.synthtalk import face, motion, speech
from data_pipelines.synthtalk.clip import generate_clip, synthesize_clip
from data_pipelines.synthtalk.speakers import make_speaker
from data_pipelines.synthtalk.specs import variant
from macl_jax.geometry import rigid_fit_3d

CLOSURE = face.VISEME_NAMES.index("closure")
JAW = face.VISEME_NAMES.index("jaw_open")


def _alignment(symbols, durations):
    return speech.Alignment.from_durations(symbols, durations)


def test_bilabials_close_the_lips_and_vowels_open_the_jaw():
    # pause, /a/ 200 ms, /m/ 120 ms, /a/ 200 ms, pause: 0.72 s = 18 frames.
    alignment = _alignment(["_", "a", "m", "a", "_"], [0.1, 0.2, 0.12, 0.2, 0.1])
    vis = motion.viseme_track(alignment, 18, 25, lead_s=0.0)
    t = motion.frame_times(18, 25)
    in_m = (t > 0.32) & (t < 0.40)
    in_a = (t > 0.14) & (t < 0.26)
    assert vis[in_m, CLOSURE].max() > 0.95
    assert vis[in_a, JAW].min() > 0.5 > vis[in_m, JAW].max() - 0.2
    assert vis[in_a, CLOSURE].max() < 0.1


def test_the_mouth_leads_the_audio_by_the_configured_lag():
    alignment = _alignment(["_", "a", "_"], [0.4, 0.4, 0.4])
    fps = 25
    base = motion.viseme_track(alignment, 30, fps, lead_s=0.0)[:, JAW]
    lead = motion.viseme_track(alignment, 30, fps, lead_s=0.08)[:, JAW]
    # Leading by 2 frames: the led track equals the base track shifted 2 frames earlier.
    np.testing.assert_allclose(lead[:-2], base[2:], atol=1e-5)


def test_blinks_are_brief_and_close_the_eyes():
    blink = motion.blink_track(np.random.default_rng(0), 25 * 60, 25)
    onsets = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert 8 <= len(onsets) <= 30  # ~0.3 blinks/s over a minute
    assert blink.max() > 0.9 and (blink > 0.5).mean() < 0.1


def test_same_utterance_admits_different_head_motions():
    spec = variant("voxceleb_like", "tiny", num_frames=50)
    speaker = make_speaker(0, "voxceleb_like", 2)
    seq = np.random.SeedSequence(11)
    a = synthesize_clip(spec, speaker, "neutral", 0, seq)
    b = synthesize_clip(spec, speaker, "neutral", 0, seq, motion_sequence=np.random.SeedSequence(99))
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.visemes, b.visemes)
    assert np.abs(np.rad2deg(a.head_euler - b.head_euler)).mean() > 0.5
    assert not np.array_equal(a.frames, b.frames)


def test_clip_ground_truth_is_consistent():
    spec = variant("voxceleb_like", "tiny", image_size=128)
    clip = generate_clip(spec, "test", spec.num_train_speakers, 1)
    posed = face.apply_pose(clip.landmarks_frontal, clip.head_rotation, clip.head_translation)
    np.testing.assert_allclose(posed, clip.landmarks_3d, atol=1e-5)
    np.testing.assert_allclose(face.project(clip.landmarks_3d, 128), clip.landmarks_2d, atol=1e-3)
    # The 27-point rigid fit of the posed landmarks to the speaker's neutral face recovers the
    # pose (the estimator used on real data); its error comes from the jaw points among the 27,
    # which move when the mouth opens.
    rotation, _ = rigid_fit_3d(clip.landmarks_3d.astype(np.float64), clip.speaker.neutral_shape())
    recovered = np.swapaxes(rotation, -1, -2)  # fit maps posed -> canonical
    angle = np.rad2deg(np.arccos(np.clip((np.trace(recovered @ np.swapaxes(clip.head_rotation, -1, -2), axis1=-2, axis2=-1) - 1) / 2, -1, 1)))
    assert angle.mean() < 1.0 and angle.max() < 5.0
    # Phoneme timing and audio length agree with the frames.
    assert clip.alignment.end[-1] == pytest.approx(spec.num_frames / spec.fps)
    assert len(clip.audio) == spec.num_samples


def test_emotion_changes_voice_and_face():
    spec = variant("mead_like", "tiny", num_frames=50)
    speaker = make_speaker(0, "mead_like", 1)
    seq = np.random.SeedSequence(5)
    neutral = synthesize_clip(spec, speaker, "neutral", 1, seq)
    happy = synthesize_clip(spec, speaker, "happy", 3, seq)
    smile = face.EXPRESSION_NAMES.index("smile")
    assert happy.expression[:, smile].mean() > neutral.expression[:, smile].mean() + 0.5
    # With the same mouth movements, the happy face's corners (48, 54) sit higher (smaller y)
    # relative to the upper-lip centre: the expression track reaches the landmarks.
    def corner_drop(landmarks):
        return (landmarks[:, [48, 54], 1].mean(-1) - landmarks[:, 51, 1]).mean()

    same_mouth_neutral = face.articulate(speaker.neutral_shape(), happy.visemes, neutral.expression)
    assert corner_drop(happy.landmarks_frontal) < corner_drop(same_mouth_neutral) - 0.01
    with pytest.raises(ValueError, match="unknown emotion"):
        synthesize_clip(spec, speaker, "bored", 1, seq)
