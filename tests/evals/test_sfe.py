"""Speaker-identity retrieval of the SFE evaluator (macl_jax.evals.sfe.speaker_identity_top1)."""

import numpy as np
import pytest

from macl_jax.evals.sfe import speaker_identity_top1


def _speaker_major(num_speakers: int, clips: int) -> list[str]:
    # Splits are stored speaker-major: all clips of a speaker are consecutive.
    return [f"spk{s:02d}" for s in range(num_speakers) for _ in range(clips)]


def test_a_perfect_speaker_embedding_scores_one_on_a_speaker_major_split():
    rng = np.random.default_rng(0)
    speakers = _speaker_major(12, 20)
    centres = rng.normal(size=(12, 32))
    labels = np.repeat(np.arange(12), 20)
    audio = centres[labels] + 0.05 * rng.normal(size=(240, 32))
    video = centres[labels] + 0.05 * rng.normal(size=(240, 32))
    top1, chance = speaker_identity_top1(audio, video, speakers, group=16)
    # A clip-level retrieval among 16 consecutive clips (one speaker) would be near chance here.
    assert top1 == 1.0
    assert chance == pytest.approx(1 / 12)


def test_a_speaker_blind_embedding_scores_chance():
    rng = np.random.default_rng(1)
    speakers = _speaker_major(12, 20)
    audio, video = rng.normal(size=(2, 240, 32))
    top1, chance = speaker_identity_top1(audio, video, speakers, group=16, rounds=400)
    assert chance == pytest.approx(1 / 12)
    assert abs(top1 - chance) < 0.025  # 4,800 queries: standard error about 0.004


def test_the_metric_is_a_fixed_function_of_its_inputs():
    rng = np.random.default_rng(2)
    speakers = _speaker_major(10, 3)
    audio, video = rng.normal(size=(2, 30, 8))
    first = speaker_identity_top1(audio, video, speakers, group=4)
    assert speaker_identity_top1(audio, video, speakers, group=4) == first
    assert first[1] == pytest.approx(3 / 10)  # groups of 4, 4 and 2 speakers


def test_one_speaker_or_mismatched_labels_are_refused():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="at least two speakers"):
        speaker_identity_top1(x, x, ["a"] * 4, group=4)
    with pytest.raises(ValueError, match="speaker labels"):
        speaker_identity_top1(x, x, ["a", "b"], group=4)
