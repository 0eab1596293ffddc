"""SynthTalk speech: utterance structure, determinism and acoustics checked with independent tools.

Formants are measured by LPC (librosa.lpc roots), f0 by librosa.pyin, spectra and levels with
numpy FFTs; the regression check uses plain least squares on hand-made frame features.
"""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
from scipy import stats

from data_pipelines.synthtalk import speech

SR = 16000
VOWELS = np.array([p.kind == "vowel" for p in speech.INVENTORY])
PAUSE = speech.phoneme_index(speech.PAUSE)


def _sustained(symbol: str, voice: speech.Voice, seconds: float = 0.8, seed: int = 0) -> np.ndarray:
    """`symbol` held for `seconds` between 0.15 s pauses; returns the middle half of the phoneme."""
    alignment = speech.Alignment.from_durations(["_", symbol, "_"], [0.15, seconds, 0.15])
    wave = speech.synthesize(alignment, voice, np.random.default_rng(seed)).waveform.astype(np.float64)
    return wave[int((0.15 + seconds / 4) * SR) : int((0.15 + 3 * seconds / 4) * SR)]


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-30))


def _power_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(x), 1 / SR), np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2


# --- inventory and voices -------------------------------------------------------------------------


def test_inventory_articulation_matches_acoustics():
    symbols = [p.symbol for p in speech.INVENTORY]
    assert len(set(symbols)) == len(symbols)
    assert {"a", "e", "i", "o", "u", "p", "b", "m", "n", "s", "S", "f", speech.PAUSE} <= set(symbols)
    for p in speech.INVENTORY:
        assert p.kind in speech.PHONEME_KINDS
        assert np.all(np.diff(p.formants) > 0) and len(p.formants) == len(p.bandwidths) == 4
        assert all(0.0 <= v <= 1.0 for v in p.viseme)
    closure = speech.VISEME_NAMES.index("closure")
    for s in "pbm":
        assert speech.INVENTORY[speech.phoneme_index(s)].viseme[closure] == 1.0
    assert 0.0 < speech.INVENTORY[speech.phoneme_index("f")].viseme[closure] < 1.0  # lip to teeth
    assert speech.INVENTORY[PAUSE].viseme[0] == 0.0 and not speech.INVENTORY[PAUSE].voiced
    vowels = [p for p in speech.INVENTORY if p.kind == "vowel"]
    # Jaw opening raises F1; lip spreading goes with front vowels (high F2), rounding with back ones.
    f1, f2 = [p.formants[0] for p in vowels], [p.formants[1] for p in vowels]
    assert stats.spearmanr(f1, [p.viseme[0] for p in vowels])[0] > 0.85
    assert stats.spearmanr(f2, [p.viseme[1] for p in vowels])[0] > 0.85
    assert stats.spearmanr(f2, [p.viseme[2] for p in vowels])[0] < -0.85
    a, i, u = (speech.INVENTORY[speech.phoneme_index(s)] for s in "aiu")
    assert i.formants[1] > a.formants[1] > u.formants[1] and a.formants[0] > 2 * i.formants[0]


def test_sample_voice_separates_sexes_and_is_valid():
    rng = np.random.default_rng(0)
    male = [speech.sample_voice(rng, sex="male") for _ in range(200)]
    female = [speech.sample_voice(rng, sex="female") for _ in range(200)]
    # Adult speaking f0 population medians are ~120 Hz (men) and ~210 Hz (women).
    assert 105 < np.median([v.f0_mean for v in male]) < 135
    assert 185 < np.median([v.f0_mean for v in female]) < 230
    assert np.mean([v.tract_scale for v in female]) > np.mean([v.tract_scale for v in male]) + 0.1
    assert np.std([v.breathiness for v in male + female]) > 0.05
    with pytest.raises(ValueError, match="sex"):
        speech.sample_voice(rng, sex="robot")


def test_invalid_arguments_name_the_culprit():
    with pytest.raises(ValueError, match="f0_mean"):
        speech.Voice(f0_mean=-5.0)
    with pytest.raises(ValueError, match="rate_scale"):
        speech.Prosody(rate_scale=0.0)
    with pytest.raises(ValueError, match="unknown emotion 'angri'"):
        speech.emotion_prosody("angri", 1)
    with pytest.raises(ValueError, match="intensity"):
        speech.emotion_prosody("sad", 4)
    with pytest.raises(ValueError, match="differ in length"):
        speech.Alignment(np.zeros(2), np.zeros(2), np.ones(3), np.zeros(2))
    with pytest.raises(ValueError, match="unknown phoneme 'x'"):
        speech.phoneme_index("x")
    alignment = speech.Alignment.from_durations(["_", "a", "_"], [0.1, 0.2, 0.1])
    with pytest.raises(ValueError, match="sample_rate"):
        speech.synthesize(alignment, speech.Voice(), np.random.default_rng(0), sample_rate=16001)


# --- utterances ----------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [0.2, 0.6, 2.56, 7.3])
@pytest.mark.parametrize("rate", [0.6, 1.0, 1.6])
def test_alignment_covers_duration_contiguously_between_pauses(duration, rate):
    alignment = speech.sample_utterance(np.random.default_rng(1), duration, speech.Voice(rate=rate))
    assert alignment.start[0] == 0.0 and alignment.end[-1] == duration
    np.testing.assert_array_equal(alignment.start[1:], alignment.end[:-1])
    assert np.all(alignment.end > alignment.start)
    assert alignment.phonemes[0] == PAUSE and alignment.phonemes[-1] == PAUSE
    pauses = alignment.phonemes == PAUSE
    assert not np.any(pauses[1:] & pauses[:-1])  # pauses are never split in two
    if duration >= 0.6:
        assert VOWELS[alignment.phonemes].any()
    targets = alignment.viseme_targets()
    np.testing.assert_array_equal(targets[pauses, 0], 0.0)
    index = alignment.phoneme_at([0.0, duration / 2, duration])
    assert index[0] == 0 and index[-1] == len(alignment.phonemes) - 1
    k = index[1]
    assert alignment.start[k] <= duration / 2 < alignment.end[k]


def _syllable_rate(rate: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    alignments = [speech.sample_utterance(rng, 8.0, speech.Voice(rate=rate)) for _ in range(8)]
    return sum(int(VOWELS[a.phonemes].sum()) for a in alignments) / (8 * 8.0)


def test_speaking_rate_sets_syllables_per_second():
    normal = _syllable_rate(1.0)
    assert 4.0 <= normal <= 6.0
    ratio = _syllable_rate(1.5) / _syllable_rate(0.75)
    # Segments scale with 1 / rate and pauses with 1 / sqrt(rate): a bit under the 2x segment ratio.
    assert 1.6 < ratio < 2.1


def test_stress_lengthens_vowels():
    rng = np.random.default_rng(2)
    stressed, unstressed = {}, {}
    for _ in range(30):
        a = speech.sample_utterance(rng, 6.0, speech.Voice())
        for p, d, s in zip(a.phonemes, a.end - a.start, a.stress):
            if VOWELS[p]:
                (stressed if s > 0.5 else unstressed).setdefault(int(p), []).append(d)
    ratios = [np.mean(stressed[p]) / np.mean(unstressed[p]) for p in stressed if p in unstressed]
    assert len(ratios) >= 5
    assert np.median(ratios) > 1.2 and min(ratios) > 1.05


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs():
    voice = speech.sample_voice(np.random.default_rng(3))
    prosody = speech.emotion_prosody("fear", 2)

    def make(seed):
        rng = np.random.default_rng(seed)
        alignment = speech.sample_utterance(rng, 2.0, voice, prosody)
        return alignment, speech.synthesize(alignment, voice, rng, prosody)

    (a1, s1), (a2, s2), (_, s3) = make(7), make(7), make(8)
    np.testing.assert_array_equal(a1.phonemes, a2.phonemes)
    np.testing.assert_array_equal(a1.end, a2.end)
    assert s1.waveform.tobytes() == s2.waveform.tobytes()
    assert s1.f0.tobytes() == s2.f0.tobytes() and s1.energy.tobytes() == s2.energy.tobytes()
    assert s1.waveform.tobytes() != s3.waveform.tobytes()
    # Same alignment, new synthesis stream: different noise and jitter, same phonetics.
    s4 = speech.synthesize(a1, voice, np.random.default_rng(99), prosody)
    assert s4.waveform.tobytes() != s1.waveform.tobytes()
    assert abs(_rms_db(s4.waveform) - _rms_db(s1.waveform)) < 1.0
    # Reported energy is the RMS of each 10 ms frame.
    frames = s1.waveform[: len(s1.waveform) // 160 * 160].reshape(-1, 160).astype(np.float64)
    np.testing.assert_allclose(s1.energy[: len(frames)], np.sqrt((frames**2).mean(1)), rtol=1e-5, atol=1e-9)


# --- acoustics -----------------------------------------------------------------------------------


def _lpc_formants(x: np.ndarray, order: int = 16) -> np.ndarray:
    """Median F1, F2 over 25 ms frames: angles of the LPC roots with bandwidth < 500 Hz."""
    x = np.append(x[0], x[1:] - 0.7 * x[:-1])
    found = []
    for start in range(0, len(x) - 400, 160):
        roots = np.roots(librosa.lpc(x[start : start + 400] * np.hamming(400), order=order))
        roots = roots[np.imag(roots) > 0]
        freqs = np.angle(roots) * SR / (2 * np.pi)
        bandwidths = -np.log(np.abs(roots)) * SR / np.pi
        freqs = np.sort(freqs[(bandwidths < 500) & (freqs > 150)])
        if len(freqs) >= 2:
            found.append(freqs[:2])
    return np.median(found, axis=0)


def test_vowel_formants_sit_at_their_targets_scaled_by_tract_length():
    measured = {}
    for scale in (1.0, 1.2):
        voice = speech.Voice(f0_mean=100.0, f0_range=2.0, tract_scale=scale, breathiness=0.1)
        for symbol in ("a", "i"):
            f1, f2 = _lpc_formants(_sustained(symbol, voice))
            target = np.array(speech.INVENTORY[speech.phoneme_index(symbol)].formants[:2]) * scale
            # LPC pulls a low F1 towards the strong first harmonics, hence the looser F1 bound.
            assert abs(f1 / target[0] - 1) < 0.15, (symbol, scale, f1, target)
            assert abs(f2 / target[1] - 1) < 0.03, (symbol, scale, f2, target)
            measured[symbol, scale] = (f1, f2)
    for symbol in ("a", "i"):
        assert measured[symbol, 1.2][1] / measured[symbol, 1.0][1] == pytest.approx(1.2, abs=0.03)
    assert measured["a", 1.2][0] / measured["a", 1.0][0] == pytest.approx(1.2, abs=0.05)


@pytest.mark.parametrize("f0", [85.0, 140.0, 230.0, 310.0])
def test_pitch_tracker_recovers_f0_mean(f0):
    voice = speech.Voice(f0_mean=f0, jitter=0.01, breathiness=0.3)
    alignment = speech.Alignment.from_durations(["_", "a", "_"], [0.1, 1.0, 0.1])
    out = speech.synthesize(alignment, voice, np.random.default_rng(0))
    estimate, voiced, _ = librosa.pyin(
        out.waveform.astype(np.float64), fmin=60, fmax=500, sr=SR, frame_length=1024, hop_length=160
    )
    assert np.nanmedian(estimate[voiced]) == pytest.approx(f0, rel=0.03)
    reported = out.f0[out.f0 > 0]
    assert np.median(reported) == pytest.approx(f0, rel=0.01)
    assert np.all(out.f0[:5] == 0) and np.all(out.f0[-5:] == 0)  # pauses are unvoiced


def test_fricatives_nasals_and_vowels_put_energy_in_their_bands():
    voice = speech.Voice(f0_mean=120.0)
    bands = {}
    for symbol in ("s", "S", "f", "a", "i", "m"):
        freqs, power = _power_spectrum(_sustained(symbol, voice, seconds=0.4))
        bands[symbol] = {
            "above_3k5": power[freqs > 3500].sum() / power.sum(),
            "below_3k": power[freqs < 3000].sum() / power.sum(),
            "below_500": power[freqs < 500].sum() / power.sum(),
            "centroid": (freqs * power).sum() / power.sum(),
            "db": 10 * np.log10(power.sum()),
        }
    assert bands["s"]["above_3k5"] > 0.85
    assert bands["s"]["centroid"] > bands["S"]["centroid"] + 500 > 3000  # sh is lower than s
    assert bands["a"]["below_3k"] > 0.95 and bands["i"]["below_3k"] > 0.9
    assert bands["m"]["below_500"] > 0.8  # nasal murmur
    assert bands["s"]["db"] - bands["f"]["db"] > 8  # f is the weak fricative
    # Levels follow the phonemes' intrinsic levels: open /a/ about 9 dB above close /i/.
    assert bands["a"]["db"] - bands["i"]["db"] == pytest.approx(9.0, abs=1.5)


def test_phoneme_level_does_not_depend_on_the_speakers_f0():
    # /u/ has a narrow, low F1: without level control its loudness would swing with the harmonics.
    f0s = (95.0, 118.0, 133.0, 210.0, 262.0)
    levels = {f0: _rms_db(_sustained("u", speech.Voice(f0_mean=f0))) for f0 in f0s}
    assert max(levels.values()) - min(levels.values()) < 2.0, levels


def test_pauses_and_bilabial_closures_are_quiet():
    alignment = speech.Alignment.from_durations(
        ["_", "a", "p", "a", "b", "a", "_"], [0.3, 0.2, 0.15, 0.2, 0.15, 0.2, 0.3]
    )
    wave = speech.synthesize(alignment, speech.Voice(), np.random.default_rng(0)).waveform

    def segment_db(k, lo=0.3, hi=0.7):
        s, e = alignment.start[k], alignment.end[k]
        return _rms_db(wave[int((s + lo * (e - s)) * SR) : int((s + hi * (e - s)) * SR)])

    vowel = segment_db(3)
    assert vowel - segment_db(0) > 50 and vowel - segment_db(6) > 50
    assert vowel - segment_db(2, 0.1, 0.5) > 40  # /p/ closure: silence
    assert vowel - segment_db(4, 0.1, 0.5) > 20  # /b/ closure: a faint voice bar
    # Random speech: every pause's middle sits > 30 dB below the vowels.
    rng = np.random.default_rng(5)
    voice = speech.sample_voice(rng)
    utterance = speech.sample_utterance(rng, 6.0, voice)
    wave = speech.synthesize(utterance, voice, rng).waveform
    segments = list(zip(utterance.phonemes, utterance.start, utterance.end))
    vowel_db = _rms_db(np.concatenate([wave[int(s * SR) : int(e * SR)] for p, s, e in segments if VOWELS[p]]))
    for p, s, e in segments:
        if p == PAUSE and e - s > 0.1:
            assert vowel_db - _rms_db(wave[int((s + 0.04) * SR) : int((e - 0.04) * SR)]) > 30


def test_emotions_are_distinct_and_grow_with_intensity():
    assert speech.emotion_prosody("neutral", 2) == speech.Prosody()
    prosodies = {e: speech.emotion_prosody(e, 3) for e in speech.EMOTIONS[1:]}
    as_vectors = {e: np.array(dataclasses.astuple(p)) for e, p in prosodies.items()}
    for e1 in prosodies:
        for e2 in prosodies:
            if e1 < e2:
                assert np.abs(as_vectors[e1] - as_vectors[e2]).max() > 0.1, (e1, e2)
    for emotion in speech.EMOTIONS[1:]:
        shifts = [abs(speech.emotion_prosody(emotion, i).f0_shift) for i in (1, 2, 3)]
        energies = [abs(speech.emotion_prosody(emotion, i).energy_db) for i in (1, 2, 3)]
        assert shifts[0] < shifts[1] < shifts[2] and energies[0] <= energies[1] <= energies[2]


def test_angry_speech_is_louder_and_higher_than_sad_speech():
    voice = speech.Voice(f0_mean=125.0)
    measured = {}
    for emotion in ("angry", "sad"):
        prosody = speech.emotion_prosody(emotion, 3)
        rng = np.random.default_rng(11)
        alignment = speech.sample_utterance(rng, 3.0, voice, prosody)
        out = speech.synthesize(alignment, voice, rng, prosody)
        wave = out.waveform.astype(np.float64)
        f0, voiced, _ = librosa.pyin(wave, fmin=60, fmax=500, sr=SR, frame_length=1024, hop_length=160)
        loud = out.energy > out.energy.max() * 0.1
        measured[emotion] = (_rms_db(wave[: len(loud) * 160].reshape(-1, 160)[loud[: len(wave) // 160]]),
                             np.nanmedian(f0[voiced]), len(alignment.phonemes) / alignment.duration)
    (angry_db, angry_f0, angry_rate), (sad_db, sad_f0, sad_rate) = measured["angry"], measured["sad"]
    assert angry_db - sad_db > 10
    assert 12 * np.log2(angry_f0 / sad_f0) > 4  # semitones
    assert angry_rate > 1.3 * sad_rate


# --- the dataset property: audio predicts mouth opening --------------------------------------------


def _frame_features(wave: np.ndarray) -> np.ndarray:
    """Per-10 ms: log energy (dB re the clip's loudest frame, floored at -50) and spectral centroid."""
    n = len(wave) // 160
    padded = np.pad(wave.astype(np.float64), (80, 240))
    frames = np.lib.stride_tricks.sliding_window_view(padded, 320)[::160][:n] * np.hanning(320)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(320, 1 / SR)
    energy = 10 * np.log10(power.sum(1) + 1e-12)
    energy = np.maximum(energy - energy.max(), -50.0)
    centroid = (power * freqs).sum(1) / (power.sum(1) + 1e-12) / 1000.0
    return np.stack([energy, centroid, energy * centroid, energy**2, centroid**2], axis=1)


def test_simple_audio_features_predict_jaw_opening_on_unseen_voices():
    rng = np.random.default_rng(0)
    features, targets, groups = [], [], []
    for speaker in range(6):
        voice = speech.sample_voice(rng, sex=("male", "female")[speaker % 2])
        for _ in range(2):
            prosody = speech.emotion_prosody(speech.EMOTIONS[int(rng.integers(8))], int(rng.integers(1, 4)))
            alignment = speech.sample_utterance(rng, 5.0, voice, prosody)
            wave = speech.synthesize(alignment, voice, rng, prosody).waveform
            x = _frame_features(wave)
            centres = (np.arange(len(x)) + 0.5) / 100
            jaw = alignment.viseme_targets()[alignment.phoneme_at(centres), 0]
            features.append(x)
            targets.append(jaw)
            groups.append(np.full(len(x), speaker))
    x, y, g = np.concatenate(features), np.concatenate(targets), np.concatenate(groups)
    design = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    train = g < 3
    coef, *_ = np.linalg.lstsq(design[train], y[train], rcond=None)
    residual = y[~train] - design[~train] @ coef
    r2 = 1 - np.sum(residual**2) / np.sum((y[~train] - y[~train].mean()) ** 2)
    assert r2 > 0.5, r2


# --- robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("f0,rate,emotion,breathiness,tract", [
    (70.0, 0.6, "sad", 1.0, 1.25),
    (70.0, 1.6, "angry", 0.0, 0.8),
    (320.0, 1.6, "fear", 1.0, 1.25),
    (320.0, 0.6, "surprised", 0.0, 0.8),
])
def test_extreme_voices_never_clip_or_go_silent(f0, rate, emotion, breathiness, tract):
    voice = speech.Voice(f0_mean=f0, rate=rate, breathiness=breathiness, tract_scale=tract, loudness=5.0,
                         f0_range=8.0, jitter=0.02, shimmer=0.1)
    prosody = speech.emotion_prosody(emotion, 3)
    rng = np.random.default_rng(4)
    alignment = speech.sample_utterance(rng, 3.0, voice, prosody)
    for sample_rate in (16000, 8000):
        out = speech.synthesize(
            alignment, voice, rng, prosody, sample_rate=sample_rate, num_samples=3 * sample_rate
        )
        wave = out.waveform
        assert wave.dtype == np.float32 and len(wave) == 3 * sample_rate and len(out.f0) == 300
        assert np.all(np.isfinite(wave)) and np.abs(wave).max() <= 0.9
        assert np.abs(wave).max() > 0.05  # speech is there
        assert np.all(np.isfinite(out.f0)) and out.f0.max() <= 600
        first_pause = int(alignment.end[0] * sample_rate)
        assert _rms_db(wave[: max(first_pause - sample_rate // 50, 1)]) < -80  # silence stays quiet
