"""Verification trial lists: the VoxCeleb1 format, generation over held-out speakers, scoring."""

import numpy as np
import pytest

from macl_jax.evals import trials as T
from macl_jax.evals.sfe import verification_metrics


def test_read_write_round_trip_and_keys(tmp_path):
    path = tmp_path / "veri_test.txt"
    path.write_text("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n\n0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n")
    trials = T.read_trials(path)
    assert trials[0] == T.Trial(1, "id10270/x6uYqmx31kE/00001", "id10270/8jEAjG6SegY/00008")
    assert trials[1].label == 0
    out = T.write_trials(tmp_path / "copy.txt", trials)
    assert T.read_trials(out) == trials


def test_bad_trial_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 a.wav b.wav\n2 a.wav\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        T.read_trials(path)
    with pytest.raises(FileNotFoundError, match="config.eval.trials"):
        T.read_trials(tmp_path / "missing.txt")


def test_make_trials_is_balanced_correct_and_deterministic():
    utterances = [f"s{s}/c{c}" for s in range(4) for c in range(5)]
    speakers = [u.split("/")[0] for u in utterances]
    trials = T.make_trials(utterances, speakers, seed=3)
    labels = np.array([t.label for t in trials])
    assert labels.sum() == 4 * 10 and (1 - labels).sum() == 40  # all C(5,2) target pairs per speaker
    for t in trials:
        assert (t.enrolment.split("/")[0] == t.test.split("/")[0]) == bool(t.label)
    assert len({(t.enrolment, t.test) for t in trials}) == len(trials)
    assert T.make_trials(utterances, speakers, seed=3) == trials
    assert len(T.make_trials(utterances, speakers, max_target=7)) == 14


def test_trial_utterances_must_exist():
    with pytest.raises(KeyError, match="not in the evaluated split"):
        T.trial_indices([T.Trial(1, "a", "zz")], ["a", "b"])


def test_verification_metrics_separate_speakers():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    utterances = [f"s{s}/c{c}" for s in range(5) for c in range(6)]
    speakers = [u.split("/")[0] for u in utterances]
    trials = T.make_trials(utterances, speakers)
    clean = np.repeat(centres, 6, axis=0) + 0.05 * rng.normal(size=(30, 16))
    assert verification_metrics(clean, utterances, trials)["eer"] == 0.0
    noise = rng.normal(size=(30, 16))
    assert verification_metrics(noise, utterances, trials)["eer"] > 0.25
