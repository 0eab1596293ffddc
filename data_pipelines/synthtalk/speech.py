"""SynthTalk speech: phoneme inventory, random utterances and source-filter synthesis (numpy/scipy only).

Runs inside grain workers: no JAX here.

* `INVENTORY` lists 27 phonemes with adult-male formants, articulatory (viseme) targets and mean
  durations. Vowel formants are Peterson & Barney (1952) male means (/e/ and /o/ from Hillenbrand
  et al. 1995, schwa the uniform 17.5 cm tube); consonants carry the formant loci their transitions
  point to.
* `sample_utterance` draws syllable-structured words grouped into phrases, with stress, covering
  exactly [0, duration] and framed by pauses.
* `synthesize` is a source-filter synthesiser. The source is a Rosenberg glottal-flow-derivative
  pulse train driven by an f0 contour (phrase declination, stress accents, jitter, shimmer, optional
  tremor) plus aspiration noise. It is filtered by a time-varying cascade of second-order
  resonators (F1..F5, a nasal pole-zero pair, the speaker's hypopharyngeal zero), applied
  frame-wise in the frequency domain: 20 ms Hann frames every 10 ms are multiplied by each frame's
  pole-zero response and overlap-added, which gives smooth formant transitions without a
  per-sample loop. Fricatives and stop bursts are band-passed noise added in the time domain.

Levels are absolute: a neutral voice at 0 dB says /a/ at -20 dBFS RMS and every phoneme sits at
its `level_db` below that whatever the speaker's f0 (each frame's filter gain is normalised over
the harmonics it passes), so loudness, stress and emotion differences survive into the waveform;
only a waveform that would clip is scaled down as a whole.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import signal

from data_pipelines import schema
from data_pipelines.synthtalk.checks import Rule, check_fields, checked, in_range

__all__ = [
    "EMOTIONS",
    "INTENSITY_FRACTION",
    "FRAME_RATE",
    "INVENTORY",
    "PAUSE",
    "PHONEME_KINDS",
    "VISEME_NAMES",
    "Alignment",
    "Phoneme",
    "Prosody",
    "Speech",
    "Voice",
    "emotion_prosody",
    "phoneme_index",
    "sample_utterance",
    "sample_voice",
    "synthesize",
]

VISEME_NAMES = ("jaw_open", "lip_width", "rounding", "closure")
PHONEME_KINDS = ("vowel", "bilabial", "stop", "fricative", "nasal", "approximant", "pause")
EMOTIONS = schema.EMOTIONS  # MEAD's names, shared with the dataset schema
PAUSE = "_"

FRAME_RATE = 100  # f0 / energy frames per second (10 ms)


@dataclasses.dataclass(frozen=True)
class Phoneme:
    """One phoneme: acoustics for an adult male vocal tract and its articulatory target.

    `formants` are F1..F4 in Hz (F4 moves the speaker's own F4 by 30 % of its offset from 3450 Hz,
    see Voice.upper_formants). `viseme` is (jaw_open, lip_width, rounding, closure) in [0, 1];
    lip_width 0.5 is the neutral width. `level_db` is the voicing level relative to /a/; `frication` is the (low, high) Hz band of
    the frication noise or stop burst and `frication_db` its level; `nasal_zero` is the anti-resonance
    of nasal consonants in Hz (0 for oral sounds).
    """

    symbol: str
    kind: str
    formants: tuple[float, ...]
    bandwidths: tuple[float, ...]
    voiced: bool
    viseme: tuple[float, float, float, float]
    duration: float
    level_db: float = 0.0
    frication: tuple[float, float] = (0.0, 0.0)
    frication_db: float = -120.0
    nasal_zero: float = 0.0


def _vowel(symbol, f, level_db, viseme, duration):
    bandwidths = (60.0 + 0.05 * f[0], 70.0 + 0.02 * f[1], 110.0 + 0.01 * f[2], 200.0)
    return Phoneme(symbol, "vowel", f, bandwidths, True, viseme, duration, level_db)


# Bandwidths of consonant loci; nasals get wider ones (losses in the nasal cavity).
_CB = (80.0, 100.0, 150.0, 250.0)
_NB = (110.0, 220.0, 300.0, 300.0)

INVENTORY: tuple[Phoneme, ...] = (
    Phoneme(PAUSE, "pause", (500.0, 1500.0, 2500.0, 3500.0), _CB, False, (0.0, 0.5, 0.0, 0.0), 0.2,
            level_db=-120.0),
    # Vowels: (F1..F4), level re /a/, (jaw, width, rounding, closure), mean duration.
    _vowel("i", (270.0, 2290.0, 3010.0, 3700.0), -9.0, (0.15, 0.95, 0.0, 0.0), 0.095),
    _vowel("I", (390.0, 1990.0, 2550.0, 3600.0), -7.0, (0.30, 0.80, 0.0, 0.0), 0.062),
    _vowel("e", (476.0, 2089.0, 2691.0, 3600.0), -4.0, (0.45, 0.75, 0.0, 0.0), 0.095),
    _vowel("ae", (660.0, 1720.0, 2410.0, 3500.0), -1.0, (0.85, 0.70, 0.0, 0.0), 0.104),
    _vowel("a", (730.0, 1090.0, 2440.0, 3400.0), 0.0, (1.00, 0.50, 0.10, 0.0), 0.104),
    _vowel("V", (640.0, 1190.0, 2390.0, 3400.0), -2.5, (0.70, 0.50, 0.05, 0.0), 0.071),
    _vowel("o", (497.0, 910.0, 2459.0, 3400.0), -3.5, (0.45, 0.20, 0.80, 0.0), 0.095),
    _vowel("U", (440.0, 1020.0, 2240.0, 3400.0), -7.0, (0.35, 0.25, 0.65, 0.0), 0.062),
    _vowel("u", (300.0, 870.0, 2240.0, 3400.0), -9.0, (0.20, 0.05, 1.00, 0.0), 0.095),
    _vowel("@", (500.0, 1500.0, 2500.0, 3500.0), -6.0, (0.40, 0.50, 0.05, 0.0), 0.048),
    # Bilabial stops: full lip closure; the burst is weak and diffuse.
    Phoneme("p", "bilabial", (250.0, 900.0, 2200.0, 3300.0), _CB, False, (0.05, 0.45, 0.10, 1.0), 0.076,
            level_db=-120.0, frication=(500.0, 4000.0), frication_db=-16.0),
    Phoneme("b", "bilabial", (250.0, 900.0, 2200.0, 3300.0), _CB, True, (0.05, 0.45, 0.10, 1.0), 0.062,
            level_db=-28.0, frication=(500.0, 4000.0), frication_db=-22.0),
    Phoneme("t", "stop", (300.0, 1700.0, 2600.0, 3300.0), _CB, False, (0.15, 0.60, 0.0, 0.0), 0.067,
            level_db=-120.0, frication=(3000.0, 7500.0), frication_db=-10.0),
    Phoneme("d", "stop", (300.0, 1700.0, 2600.0, 3300.0), _CB, True, (0.15, 0.60, 0.0, 0.0), 0.052,
            level_db=-28.0, frication=(3000.0, 7500.0), frication_db=-16.0),
    Phoneme("k", "stop", (300.0, 1900.0, 2300.0, 3300.0), _CB, False, (0.25, 0.50, 0.10, 0.0), 0.071,
            level_db=-120.0, frication=(1500.0, 3500.0), frication_db=-12.0),
    Phoneme("g", "stop", (300.0, 1900.0, 2300.0, 3300.0), _CB, True, (0.25, 0.50, 0.10, 0.0), 0.057,
            level_db=-28.0, frication=(1500.0, 3500.0), frication_db=-18.0),
    # Fricatives: f/v lower lip to upper teeth (partial closure); s/z strong high band; sh rounded.
    Phoneme("f", "fricative", (300.0, 1100.0, 2300.0, 3300.0), _CB, False, (0.10, 0.45, 0.10, 0.60), 0.085,
            level_db=-120.0, frication=(1200.0, 7500.0), frication_db=-28.0),
    Phoneme("v", "fricative", (300.0, 1100.0, 2300.0, 3300.0), _CB, True, (0.10, 0.45, 0.10, 0.60), 0.052,
            level_db=-15.0, frication=(1200.0, 7500.0), frication_db=-32.0),
    Phoneme("s", "fricative", (300.0, 1600.0, 2600.0, 3300.0), _CB, False, (0.10, 0.65, 0.0, 0.0), 0.095,
            level_db=-120.0, frication=(4200.0, 7800.0), frication_db=-14.0),
    Phoneme("z", "fricative", (300.0, 1600.0, 2600.0, 3300.0), _CB, True, (0.10, 0.65, 0.0, 0.0), 0.067,
            level_db=-15.0, frication=(4200.0, 7800.0), frication_db=-19.0),
    Phoneme("S", "fricative", (300.0, 1800.0, 2300.0, 3300.0), _CB, False, (0.15, 0.30, 0.60, 0.0), 0.095,
            level_db=-120.0, frication=(2400.0, 6000.0), frication_db=-12.0),
    # Nasals: low murmur; the anti-resonance sits lower for /m/ (long side branch) than for /n/.
    Phoneme("m", "nasal", (270.0, 1000.0, 2200.0, 3300.0), _NB, True, (0.05, 0.45, 0.10, 1.0), 0.062,
            level_db=-13.0, nasal_zero=1100.0),
    Phoneme("n", "nasal", (270.0, 1600.0, 2600.0, 3300.0), _NB, True, (0.15, 0.55, 0.0, 0.0), 0.052,
            level_db=-13.0, nasal_zero=1800.0),
    # Approximants: vowel-like, quieter.
    Phoneme("l", "approximant", (360.0, 1200.0, 2600.0, 3300.0), _CB, True, (0.30, 0.50, 0.0, 0.0), 0.052,
            level_db=-10.0),
    Phoneme("w", "approximant", (300.0, 700.0, 2200.0, 3300.0), _CB, True, (0.15, 0.05, 1.0, 0.0), 0.052,
            level_db=-11.0),
    Phoneme("j", "approximant", (270.0, 2100.0, 3000.0, 3600.0), _CB, True, (0.15, 0.85, 0.0, 0.0), 0.048,
            level_db=-11.0),
)

_INDEX = {p.symbol: i for i, p in enumerate(INVENTORY)}
_PAUSE_INDEX = _INDEX[PAUSE]


def phoneme_index(symbol: str) -> int:
    """Index of `symbol` in INVENTORY."""
    try:
        return _INDEX[symbol]
    except KeyError:
        raise ValueError(
            f"unknown phoneme {symbol!r}; INVENTORY has {', '.join(_INDEX)}"
        ) from None


# Column views of the inventory for vectorised lookups.
_KIND = np.array([PHONEME_KINDS.index(p.kind) for p in INVENTORY])
_IS_PAUSE = _KIND == PHONEME_KINDS.index("pause")
_IS_STOP = np.isin(_KIND, [PHONEME_KINDS.index("bilabial"), PHONEME_KINDS.index("stop")])
_IS_FRICATIVE = _KIND == PHONEME_KINDS.index("fricative")
_FORMANTS = np.array([p.formants for p in INVENTORY])
_BANDWIDTHS = np.array([p.bandwidths for p in INVENTORY])
_VISEMES = np.array([p.viseme for p in INVENTORY], dtype=np.float32)
_DURATIONS = np.array([p.duration for p in INVENTORY])
_VOICED = np.array([p.voiced for p in INVENTORY])
_VOICE_AMP = 10.0 ** (np.array([p.level_db for p in INVENTORY]) / 20.0) * _VOICED
_FRIC_BAND = np.array([p.frication for p in INVENTORY])
_FRIC_AMP = 10.0 ** (np.array([p.frication_db for p in INVENTORY]) / 20.0)
_NASAL_ZERO = np.array([p.nasal_zero for p in INVENTORY])


# ----------------------------------------------------------------------------------------------
# Voices and prosody


@dataclasses.dataclass(frozen=True)
class Voice:
    """A speaker's voice.

    f0_mean (Hz); f0_range: intonation span in semitones; tract_scale multiplies every formant
    (short tracts -> higher formants, ~0.8..1.25); breathiness in [0, 1]; rate multiplies speaking
    rate; loudness in dB; jitter and shimmer are per-period relative f0 / amplitude perturbations;
    tilt (dB/octave) brightens (>0) or darkens (<0) the source; formant_shift multiplies F1..F4
    individually on top of tract_scale (idiosyncratic vocal-tract shape). The remaining fields
    are speaker-specific and nearly phoneme-independent, as in real voices: upper_formants are the
    speaker's F4 and F5, sinus_zero the anti-resonance of the hypopharyngeal (piriform) cavities
    (0 disables it), all in adult-male Hz before tract_scale; sibilance scales fricative bands.
    """

    f0_mean: float = checked(in_range(30.0, 600.0, "Hz"), default=120.0)
    f0_range: float = checked(in_range(0.0, 24.0, "semitones"), default=4.0)
    tract_scale: float = checked(in_range(0.5, 2.0), default=1.0)
    breathiness: float = checked(in_range(0.0, 1.0), default=0.2)
    rate: float = checked(in_range(0.2, 5.0), default=1.0)
    loudness: float = checked(in_range(-40.0, 40.0, "dB"), default=0.0)
    jitter: float = checked(in_range(0.0, 0.2), default=0.005)
    shimmer: float = checked(in_range(0.0, 0.5), default=0.03)
    tilt: float = checked(in_range(-24.0, 24.0, "dB/octave"), default=0.0)
    formant_shift: tuple[float, float, float, float] = checked(
        in_range(0.5, 2.0, shape=(4,)), default=(1.0, 1.0, 1.0, 1.0)
    )
    upper_formants: tuple[float, float] = checked(
        Rule(lambda f: len(f) == 2 and 2500.0 <= f[0] < f[1] <= 6000.0,
             "must be (F4, F5) with 2500 <= F4 < F5 <= 6000 Hz"),
        default=(3500.0, 4500.0),
    )
    sinus_zero: float = checked(
        Rule(lambda f: f == 0.0 or 2500.0 <= f <= 6000.0, "must be 0 (none) or in [2500, 6000] Hz"), default=0.0
    )
    sibilance: float = checked(in_range(0.5, 2.0), default=1.0)

    def __post_init__(self):
        check_fields(self)


def sample_voice(rng: np.random.Generator, sex: str | None = None) -> Voice:
    """A random adult voice; `sex` is "male", "female" or None (either, with equal odds)."""
    if sex is None:
        sex = "female" if rng.random() < 0.5 else "male"
    if sex not in ("male", "female"):
        raise ValueError(f"sex must be 'male', 'female' or None, got {sex!r}")
    female = sex == "female"
    # Population means and spreads of adult speaking f0 and vocal-tract length.
    f0 = float(np.clip(np.exp(rng.normal(np.log(205.0 if female else 118.0), 0.12)),
                       *((160.0, 280.0) if female else (82.0, 165.0))))
    tract = float(np.clip(rng.normal(1.16 if female else 1.0, 0.04),
                          *((1.06, 1.25) if female else (0.86, 1.1))))
    breath_lo, breath_hi = (0.15, 0.55) if female else (0.05, 0.4)
    f4 = rng.uniform(3200.0, 3850.0)
    return Voice(
        f0_mean=f0,
        f0_range=float(rng.uniform(2.5, 6.5)),
        tract_scale=tract,
        breathiness=float(rng.uniform(breath_lo, breath_hi)),
        rate=float(rng.uniform(0.85, 1.18)),
        loudness=float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0)),
        jitter=float(rng.uniform(0.002, 0.012)),
        shimmer=float(rng.uniform(0.015, 0.06)),
        tilt=float(rng.uniform(-3.0, 3.0)),
        formant_shift=tuple(float(s) for s in np.clip(1.0 + rng.normal(0.0, 0.035, 4), 0.92, 1.08)),
        upper_formants=(float(f4), float(f4 + rng.uniform(700.0, 1500.0))),
        sinus_zero=float(rng.uniform(3900.0, 5200.0)),
        sibilance=float(rng.uniform(0.88, 1.12)),
    )


@dataclasses.dataclass(frozen=True)
class Prosody:
    """Emotion/intensity modifiers applied on top of a Voice.

    f0_shift in semitones; f0_range_scale multiplies the intonation span; energy_db adds to the
    level; rate_scale multiplies speaking rate; breathiness_add adds to breathiness; tremor is the
    depth (semitones) of a ~5.5 Hz f0/amplitude tremor; jitter_scale multiplies jitter and shimmer
    (creaky voice); tilt_db adds to the source tilt (>0: tense, bright; <0: lax, dark).
    """

    f0_shift: float = checked(in_range(-24.0, 24.0, "semitones"), default=0.0)
    f0_range_scale: float = checked(in_range(0.0, 5.0), default=1.0)
    energy_db: float = checked(in_range(-40.0, 40.0, "dB"), default=0.0)
    rate_scale: float = checked(in_range(0.2, 5.0), default=1.0)
    breathiness_add: float = checked(in_range(-1.0, 1.0), default=0.0)
    tremor: float = checked(in_range(0.0, 3.0, "semitones"), default=0.0)
    jitter_scale: float = checked(in_range(0.0, 10.0), default=1.0)
    tilt_db: float = checked(in_range(-24.0, 24.0, "dB/octave"), default=0.0)

    def __post_init__(self):
        check_fields(self)


# Emotion effects at intensity 3 (intensities 1 and 2 take a fraction of them). Directions follow
# the vocal-emotion literature (e.g. Scherer 2003; Banse & Scherer 1996): anger and joy raise f0,
# level and vocal effort; sadness lowers and flattens f0, slows down and turns breathy; fear is
# high, fast and unsteady; surprise is high with a wide range; disgust and contempt are low, slow,
# creaky.
_EMOTION_EFFECTS: dict[str, dict[str, float]] = {
    "angry": dict(f0_shift=4.0, f0_range_scale=1.5, energy_db=9.0, rate_scale=1.2,
                  breathiness_add=-0.1, jitter_scale=1.3, tilt_db=4.0),
    "disgusted": dict(f0_shift=-2.0, f0_range_scale=0.9, energy_db=1.0, rate_scale=0.82,
                      breathiness_add=0.05, jitter_scale=2.2, tilt_db=-1.0),
    "contempt": dict(f0_shift=-2.5, f0_range_scale=0.75, energy_db=-2.0, rate_scale=0.88,
                     breathiness_add=0.15, jitter_scale=1.8, tilt_db=-2.0),
    "fear": dict(f0_shift=5.0, f0_range_scale=0.8, energy_db=2.0, rate_scale=1.25,
                 breathiness_add=0.2, tremor=0.6, jitter_scale=1.5, tilt_db=0.0),
    "happy": dict(f0_shift=3.0, f0_range_scale=1.7, energy_db=4.0, rate_scale=1.1,
                  tilt_db=2.0),
    "sad": dict(f0_shift=-3.0, f0_range_scale=0.5, energy_db=-7.0, rate_scale=0.75,
                breathiness_add=0.3, jitter_scale=1.2, tilt_db=-4.0),
    "surprised": dict(f0_shift=6.0, f0_range_scale=2.0, energy_db=4.0, rate_scale=1.0,
                      tilt_db=2.0),
}
INTENSITY_FRACTION = {1: 0.4, 2: 0.7, 3: 1.0}
_MULTIPLICATIVE = ("f0_range_scale", "rate_scale", "jitter_scale")


def emotion_prosody(emotion: str, intensity: int) -> Prosody:
    """Prosody of `emotion` (one of EMOTIONS) at MEAD intensity 1, 2 or 3; neutral is Prosody()."""
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTIONS)}")
    if intensity not in INTENSITY_FRACTION:
        raise ValueError(f"intensity must be 1, 2 or 3, got {intensity!r}")
    if emotion == "neutral":
        return Prosody()
    k = INTENSITY_FRACTION[intensity]
    values = {
        name: (value**k if name in _MULTIPLICATIVE else value * k)
        for name, value in _EMOTION_EFFECTS[emotion].items()
    }
    return Prosody(**values)


# ----------------------------------------------------------------------------------------------
# Alignments and utterances


@dataclasses.dataclass(frozen=True, eq=False)
class Alignment:
    """A phoneme track: INVENTORY indices with contiguous [start, end) times (s) and stress in [0, 1]."""

    phonemes: np.ndarray
    start: np.ndarray
    end: np.ndarray
    stress: np.ndarray

    def __post_init__(self):
        phonemes = np.asarray(self.phonemes, dtype=np.int32).reshape(-1)
        start = np.asarray(self.start, dtype=np.float64).reshape(-1)
        end = np.asarray(self.end, dtype=np.float64).reshape(-1)
        stress = np.asarray(self.stress, dtype=np.float32).reshape(-1)
        n = len(phonemes)
        if n == 0:
            raise ValueError("Alignment needs at least one phoneme")
        if not len(start) == len(end) == len(stress) == n:
            raise ValueError(
                f"Alignment arrays differ in length: phonemes {n}, start {len(start)}, "
                f"end {len(end)}, stress {len(stress)}"
            )
        if phonemes.min() < 0 or phonemes.max() >= len(INVENTORY):
            raise ValueError(f"Alignment.phonemes must index INVENTORY (0..{len(INVENTORY) - 1})")
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(end)) and np.all(end > start)):
            raise ValueError("Alignment needs finite times with end > start for every phoneme")
        if not np.all((stress >= 0.0) & (stress <= 1.0)):
            raise ValueError("Alignment.stress must lie in [0, 1]")
        for name, value in (("phonemes", phonemes), ("start", start), ("end", end), ("stress", stress)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    @classmethod
    def from_durations(
        cls, symbols: list[str] | tuple[str, ...], durations, stress=None
    ) -> Alignment:
        """Contiguous alignment from phoneme symbols and durations (s), starting at 0."""
        edges = np.concatenate([[0.0], np.cumsum(np.asarray(durations, dtype=np.float64))])
        stress = np.zeros(len(symbols)) if stress is None else stress
        return cls(np.array([phoneme_index(s) for s in symbols]), edges[:-1], edges[1:], stress)

    @property
    def duration(self) -> float:
        """End time of the last phoneme (s)."""
        return float(self.end[-1])

    @property
    def symbols(self) -> list[str]:
        """Phoneme symbols in order."""
        return [INVENTORY[i].symbol for i in self.phonemes]

    def viseme_targets(self) -> np.ndarray:
        """Articulatory targets (N, 4) float32 in VISEME_NAMES order, one row per phoneme."""
        return _VISEMES[self.phonemes]

    def phoneme_at(self, times) -> np.ndarray:
        """Position (into this alignment) of the phoneme sounding at each time; clipped to the ends."""
        index = np.searchsorted(self.end, np.asarray(times, dtype=np.float64), side="right")
        return np.clip(index, 0, len(self.phonemes) - 1)


# Syllable inventory weights: onsets, codas and vowels, stressed and reduced.
_ONSETS = {"p": 4, "b": 4, "m": 5, "t": 6, "d": 5, "k": 5, "g": 2, "f": 3, "v": 2, "s": 6, "z": 1,
           "S": 2, "n": 5, "l": 5, "w": 3, "j": 2}
_CODAS = {"t": 5, "d": 4, "k": 3, "s": 5, "z": 3, "n": 6, "m": 4, "l": 3, "f": 1, "v": 1, "p": 2,
          "b": 1, "S": 1, "g": 1}
_STRESSED_VOWELS = {"a": 4, "ae": 3, "e": 3, "i": 4, "o": 3, "u": 2, "V": 2, "I": 2, "U": 1}
_REDUCED_VOWELS = {"@": 5, "I": 3, "U": 1, "i": 1, "V": 1, "a": 1, "e": 1, "o": 1}
_SYLLABLE_SHAPES = (("CV", 0.5), ("CVC", 0.3), ("V", 0.1), ("VC", 0.1))


def _table(weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.array(list(weights.values()), dtype=np.float64)
    return np.array([_INDEX[s] for s in weights]), p / p.sum()


_ONSET_TABLE = _table(_ONSETS)
_CODA_TABLE = _table(_CODAS)
_STRESSED_TABLE = _table(_STRESSED_VOWELS)
_REDUCED_TABLE = _table(_REDUCED_VOWELS)
_SHAPE_P = np.array([p for _, p in _SYLLABLE_SHAPES])


Row = tuple[int, float, float]  # (phoneme index, duration s, stress)


def _word(rng: np.random.Generator, rate: float) -> list[Row]:
    """One word: 1-3 syllables, at most one of them stressed (all its segments carry the stress)."""
    num_syllables = int(rng.choice(3, p=[0.5, 0.35, 0.15])) + 1
    if num_syllables == 1:
        stressed = 0 if rng.random() < 0.6 else -1  # monosyllabic function words go unstressed
    else:
        stressed = 0 if rng.random() < 0.7 else int(rng.integers(num_syllables))
    rows = []
    for syllable in range(num_syllables):
        stress = float(rng.uniform(0.55, 0.85)) if syllable == stressed else 0.0
        shape = _SYLLABLE_SHAPES[int(rng.choice(len(_SYLLABLE_SHAPES), p=_SHAPE_P))][0]
        vowels, vowel_p = _STRESSED_TABLE if stress > 0 else _REDUCED_TABLE
        for slot in shape:
            if slot == "V":
                index = int(rng.choice(vowels, p=vowel_p))
                lengthen = 1.0 + 0.5 * stress
            else:
                table, p = _ONSET_TABLE if slot == shape[0] else _CODA_TABLE
                index = int(rng.choice(table, p=p))
                lengthen = 1.0 + 0.15 * stress
            # Log-normal spread of segment durations (~20 %), floor at 25 ms of articulation.
            duration = _DURATIONS[index] * lengthen * math.exp(0.2 * rng.standard_normal()) / rate
            rows.append((index, max(duration, 0.025 / rate), stress))
    return rows


def _phrase(rng: np.random.Generator, rate: float, pause_rate: float) -> list[list[Row]]:
    """2-7 words, occasionally split by a short pause, ending in a phrase pause; one unit per item."""
    words = [_word(rng, rate) for _ in range(int(rng.integers(2, 8)))]
    # The nuclear accent (stress 1, a little longer) falls on the last stressed syllable.
    for rows in reversed(words):
        if any(stress > 0 for _, _, stress in rows):
            rows[:] = [(i, d * (1.0 + 0.1 * (1.0 - s)), 1.0) if s > 0 else (i, d, s) for i, d, s in rows]
            break
    # Phrase-final lengthening of the last two segments.
    words[-1][-2:] = [(i, d * 1.25, s) for i, d, s in words[-1][-2:]]
    units = []
    for k, rows in enumerate(words):
        units.append(rows)
        if k < len(words) - 1 and rng.random() < 0.1:
            units.append([(_PAUSE_INDEX, float(rng.uniform(0.05, 0.12)) / pause_rate, 0.0)])
    units.append([(_PAUSE_INDEX, float(rng.uniform(0.12, 0.4)) / pause_rate, 0.0)])
    return units


_MIN_EDGE_PAUSE = 0.08


def sample_utterance(
    rng: np.random.Generator, duration: float, voice: Voice, prosody: Prosody = Prosody()
) -> Alignment:
    """A random utterance covering exactly [0, duration] s.

    Words of 1-3 syllables (CV, CVC, V, VC) form phrases of 2-7 words separated by pauses; one
    syllable per word may be stressed (lengthened, and accented by `synthesize`), the last stressed
    syllable of each phrase carries the nuclear accent (stress 1). Starts and ends with a pause.
    At rate 1 about 5 syllables per second of speech (4 including pauses); segment durations scale
    with 1 / (voice.rate * prosody.rate_scale). Shorter than one syllable -> a single pause.
    """
    if not (np.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    rate = voice.rate * prosody.rate_scale
    pause_rate = math.sqrt(rate)  # pauses shrink less than segments in fast speech
    initial = float(rng.uniform(0.08, 0.2)) / pause_rate
    final = max(float(rng.uniform(0.08, 0.2)) / pause_rate, _MIN_EDGE_PAUSE)
    units: list[list[Row]] = [[(_PAUSE_INDEX, initial, 0.0)]]
    total = initial
    while total + final < duration:
        for unit in _phrase(rng, rate, pause_rate):
            units.append(unit)
            total += sum(d for _, d, _ in unit)
    # Drop trailing units until the utterance ends in a word and the final pause fits.
    while len(units) > 1 and (units[-1][0][0] == _PAUSE_INDEX or total + final > duration):
        total -= sum(d for _, d, _ in units.pop())
    if len(units) == 1:
        # Too short for the words drawn: try a few single words before settling for silence.
        for _ in range(8):
            word = _word(rng, rate)
            if total + sum(d for _, d, _ in word) + final <= duration:
                units.append(word)
                total += sum(d for _, d, _ in word)
                break
        else:
            return Alignment(np.array([_PAUSE_INDEX]), np.array([0.0]), np.array([duration]), np.zeros(1))
    units.append([(_PAUSE_INDEX, final, 0.0)])
    # Spread the slack over all pauses in proportion to their length, so none becomes outlandish.
    pauses = [k for k, unit in enumerate(units) if unit[0][0] == _PAUSE_INDEX]
    pause_total = sum(units[k][0][1] for k in pauses)
    stretch = 1.0 + (duration - total - final) / pause_total
    for k in pauses:
        units[k] = [(_PAUSE_INDEX, units[k][0][1] * stretch, 0.0)]
    rows = [row for unit in units for row in unit]
    edges = np.concatenate([[0.0], np.cumsum([d for _, d, _ in rows])])
    edges[-1] = duration  # exact coverage despite rounding in the sum
    phonemes = np.array([i for i, _, _ in rows], dtype=np.int32)
    return Alignment(phonemes, edges[:-1], edges[1:], np.array([s for _, _, s in rows]))


# ----------------------------------------------------------------------------------------------
# Synthesis


@dataclasses.dataclass(frozen=True, eq=False)
class Speech:
    """Synthesised speech: float32 waveform and per-10 ms f0 (Hz, 0 when unvoiced) and RMS energy.

    Frame i covers samples [i * hop, (i + 1) * hop) with hop = sample_rate / 100.
    """

    waveform: np.ndarray
    f0: np.ndarray
    energy: np.ndarray
    sample_rate: int = 16000


# Output scale: a neutral /a/ (0 dB voice and prosody) at -20 dBFS RMS, which leaves 14 dB of
# headroom for loud voices and emotions before the peak limiter has to act.
_OUTPUT_GAIN = 0.106
_VOICED_GAIN = 2.63  # puts the level-controlled voiced path on the same scale as the frication
_NOISE_FLOOR = 2e-5  # -94 dBFS RMS: pauses sit ~70 dB below vowels yet log features stay finite
_PEAK_LIMIT = 0.9
_BREATH_NOISE = 0.35  # aspiration noise std at breathiness 1, re the pulses' unit closing peak
_NASAL_POLE = 270.0
_NASAL_POLE_BW = 100.0
_F4_REFERENCE = 3450.0  # phoneme F4s move the speaker's F4 by 30 % of their offset from this
_B5 = 300.0
_SINUS_ZERO_BW = 300.0


@functools.lru_cache(maxsize=512)
def _bandpass(lo: float, hi: float, sample_rate: int) -> np.ndarray:
    nyquist = sample_rate / 2
    hi = min(hi, 0.94 * nyquist)
    lo = min(lo, 0.6 * hi)
    return signal.butter(2, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")


def _knots(start: np.ndarray, end: np.ndarray, values: np.ndarray, ramp) -> tuple[np.ndarray, np.ndarray]:
    """Two knots per phoneme (start + ramp, end - ramp) holding its value; linear in between."""
    r = np.minimum(ramp, (end - start) / 3.0) if np.ndim(ramp) == 0 else ramp
    t = np.stack([start + r, end - r], axis=1).reshape(-1)
    v = np.repeat(values, 2, axis=0)
    return t, v


def _interp_columns(x: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(x, t, v[:, k]) for k in range(v.shape[1])], axis=1)


_PULSE_TABLE_SIZE = 4096


@functools.lru_cache(maxsize=64)
def _pulse_tables(open_quotient: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Rosenberg flow derivative and flow over one period, tabulated on a fine phase grid.

    The derivative is taken per unit phase, so its level does not depend on f0; it is normalised to
    a unit closing peak whatever the open quotient.
    """
    u = (np.arange(_PULSE_TABLE_SIZE) + 0.5) / _PULSE_TABLE_SIZE
    tp = 0.65 * open_quotient  # opening
    tn = 0.35 * open_quotient  # closing, ending in the abrupt closure that excites the tract
    rising = u < tp
    falling = (u >= tp) & (u < tp + tn)
    ur = np.where(rising, u / tp, 0.0)
    uf = np.where(falling, (u - tp) / tn, 0.0)
    derivative = np.where(rising, 0.5 * math.pi / tp * np.sin(math.pi * ur), 0.0)
    derivative = np.where(falling, -0.5 * math.pi / tn * np.sin(0.5 * math.pi * uf), derivative)
    flow = np.where(rising, 0.5 * (1.0 - np.cos(math.pi * ur)), 0.0)
    flow = np.where(falling, np.cos(0.5 * math.pi * uf), flow)
    # Mean power of the open-glottis gate applied to the aspiration noise.
    gate_power = float(np.mean((0.25 + 0.75 * flow) ** 2))
    return derivative * (tn / (0.5 * math.pi)), flow, gate_power


def _glottal(phase: np.ndarray, open_quotient: float) -> tuple[np.ndarray, np.ndarray]:
    """Flow derivative and flow at each sample's glottal phase (cycles)."""
    derivative, flow, _ = _pulse_tables(round(open_quotient, 3))
    index = ((phase - np.floor(phase)) * _PULSE_TABLE_SIZE).astype(np.int64)
    np.minimum(index, _PULSE_TABLE_SIZE - 1, out=index)
    return derivative[index], flow[index]


def _phrase_knots(alignment: Alignment, min_pause: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) times of phrases: speech runs separated by pauses of at least `min_pause` s."""
    is_break = _IS_PAUSE[alignment.phonemes] & ((alignment.end - alignment.start) >= min_pause)
    speech = ~is_break
    if not speech.any():
        return np.array([0.0]), np.array([alignment.duration])
    edges = np.diff(np.concatenate([[0], speech.astype(np.int8), [0]]))
    first = np.flatnonzero(edges == 1)
    last = np.flatnonzero(edges == -1) - 1
    return alignment.start[first], alignment.end[last]


def synthesize(
    alignment: Alignment,
    voice: Voice,
    rng: np.random.Generator,
    prosody: Prosody = Prosody(),
    sample_rate: int = 16000,
    num_samples: int | None = None,
) -> Speech:
    """Speech for `alignment` in `voice` (+ `prosody`); deterministic given the state of `rng`.

    `num_samples` defaults to the alignment's duration; a longer request is padded with silence.
    """
    if sample_rate < 8000 or sample_rate % FRAME_RATE:
        raise ValueError(f"sample_rate must be >= 8000 and a multiple of {FRAME_RATE}, got {sample_rate}")
    sr = int(sample_rate)
    n = int(round(alignment.duration * sr)) if num_samples is None else int(num_samples)
    if n <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples!r}")
    hop = sr // FRAME_RATE
    window = 2 * hop
    # FFT long enough that the narrowest resonance (B ~ 60 Hz, tau ~ 5 ms) decays before wrapping.
    nfft = 1 << math.ceil(math.log2(window + 0.045 * sr))
    chunks = -(-nfft // hop)
    num_ctrl = (n + hop - 1) // hop + 1  # control frames centred at j * hop, covering every sample
    t_ctrl = np.arange(num_ctrl) * (hop / sr)
    t_samples = np.arange(n) / sr

    ph = alignment.phonemes
    start, end = alignment.start, alignment.end
    mid = 0.5 * (start + end)
    dur = end - start
    scale = voice.tract_scale
    breath = float(np.clip(voice.breathiness + prosody.breathiness_add, 0.0, 1.0))

    # --- f0 (semitones re 1 Hz) and level (dB) at control frames.
    span = voice.f0_range * prosody.f0_range_scale
    phrase_start, phrase_end = _phrase_knots(alignment)
    # Declination: each phrase falls from +0.35 span to -0.35 span, symmetric about the mean.
    decl_t = np.stack([phrase_start, phrase_end], axis=1).reshape(-1)
    decl_v = np.tile([0.35, -0.35], len(phrase_start))
    declination = np.interp(t_ctrl, decl_t, decl_v)
    stress = np.interp(t_ctrl, mid, alignment.stress.astype(np.float64))
    stress = np.convolve(np.pad(stress, 2, mode="edge"), np.full(5, 0.2), mode="valid")
    wander_f = rng.uniform(0.3, 1.5, 3)
    wander_phase = rng.uniform(0.0, 2 * math.pi, 3)
    wander = 0.12 * np.sin(2 * math.pi * wander_f[:, None] * t_ctrl + wander_phase[:, None]).sum(0)
    tremor_f = float(rng.uniform(4.5, 6.5))
    tremor = prosody.tremor * np.sin(2 * math.pi * tremor_f * t_ctrl + float(rng.uniform(0, 2 * math.pi)))
    semitones = (12.0 * math.log2(voice.f0_mean) + prosody.f0_shift + span * (declination + 0.6 * stress)
                 + wander + tremor)
    f0_ctrl = np.clip(2.0 ** (semitones / 12.0), 40.0, min(600.0, 0.2 * sr))
    # Level: stress adds up to 4 dB, each phrase fades by 2 dB, tremor modulates amplitude too.
    level_db = voice.loudness + prosody.energy_db + 4.0 * stress + 3.0 * declination + 1.5 * tremor

    # --- Per-sample source controls.
    f0_s = np.interp(t_samples, t_ctrl, f0_ctrl)
    gain_s = 10.0 ** (np.interp(t_samples, t_ctrl, level_db) / 20.0)
    knot_t, knot_v = _knots(start, end, _VOICE_AMP[ph], 0.012)
    voicing = np.interp(t_samples, knot_t, knot_v)

    jitter = voice.jitter * prosody.jitter_scale
    shimmer = voice.shimmer * prosody.jitter_scale
    period = (np.cumsum(f0_s) / sr).astype(np.int64)
    num_periods = int(period[-1]) + 2
    period_jitter = np.clip(1.0 + jitter * rng.standard_normal(num_periods), 0.5, 1.5)
    phase = np.cumsum(f0_s * period_jitter[period]) / sr
    period_amp = np.clip(1.0 + shimmer * rng.standard_normal(num_periods), 0.2, 2.0)
    open_quotient = 0.5 + 0.3 * breath
    pulses, flow = _glottal(phase, open_quotient)
    pulses *= period_amp[phase.astype(np.int64)]

    # Aspiration: breathy noise gated by the open glottis, plus post-release aspiration of p, t, k.
    aspiration = np.zeros(n)
    frication = np.zeros(n)
    asp_noise = rng.standard_normal(n)
    fric_noise = rng.standard_normal(n)
    _stop_releases(ph, start, end, sr, n, scale * voice.sibilance, aspiration, frication, fric_noise)
    _fricatives(ph, start, end, sr, n, scale * voice.sibilance, frication, fric_noise)
    breathy = _BREATH_NOISE * breath * voicing * (0.25 + 0.75 * flow)
    source = gain_s * (voicing * (1.0 - 0.4 * breath) * pulses + asp_noise * (breathy + aspiration))

    # --- Vocal-tract response per control frame: cascade of F1..F5 and the nasal pole, with the
    # nasal and hypopharyngeal zeros.
    oral = ~_IS_PAUSE[ph]
    if oral.any():
        knot_t, knot_f = _knots(start[oral], end[oral], _FORMANTS[ph[oral]], 0.3 * dur[oral])
        _, knot_b = _knots(start[oral], end[oral], _BANDWIDTHS[ph[oral]], 0.3 * dur[oral])
        # Oral sounds carry a nasal zero on top of the nasal pole, cancelling it.
        nz = np.where(_NASAL_ZERO[ph[oral]] > 0, _NASAL_ZERO[ph[oral]], _NASAL_POLE)
        nzb = np.where(_NASAL_ZERO[ph[oral]] > 0, 150.0, _NASAL_POLE_BW)
        _, knot_z = _knots(start[oral], end[oral], np.stack([nz, nzb], axis=1), 0.3 * dur[oral])
        formants = _interp_columns(t_ctrl, knot_t, knot_f)
        bandwidths = _interp_columns(t_ctrl, knot_t, knot_b)
        nasal_zero = _interp_columns(t_ctrl, knot_t, knot_z)
    else:
        formants = np.tile(_FORMANTS[_PAUSE_INDEX], (num_ctrl, 1))
        bandwidths = np.tile(_BANDWIDTHS[_PAUSE_INDEX], (num_ctrl, 1))
        nasal_zero = np.tile([_NASAL_POLE, _NASAL_POLE_BW], (num_ctrl, 1))
    formants[:, 3] = voice.upper_formants[0] + 0.3 * (formants[:, 3] - _F4_REFERENCE)
    formants = formants * scale * np.asarray(voice.formant_shift)
    bandwidths[:, 0] *= 1.0 + 0.5 * breath  # glottal losses widen F1 in breathy voice
    column = np.ones((num_ctrl, 1))
    f5 = voice.upper_formants[1] * scale
    poles_f = np.concatenate([formants, column * f5, column * (_NASAL_POLE * scale)], 1)
    poles_b = np.concatenate([bandwidths, column * _B5, column * _NASAL_POLE_BW], 1)
    keep = poles_f < 0.45 * sr  # resonances above Nyquist are dropped, not aliased
    zeros_f = np.concatenate([nasal_zero[:, :1] * scale, column * (voice.sinus_zero * scale)], 1)
    zeros_b = np.concatenate([nasal_zero[:, 1:], column * _SINUS_ZERO_BW], 1)
    keep_zeros = (zeros_f > 0) & (zeros_f < 0.45 * sr)
    denominator = _resonator_polynomial(poles_f, poles_b, keep, sr)
    numerator = _resonator_polynomial(zeros_f, zeros_b, keep_zeros, sr)
    tilt = voice.tilt + prosody.tilt_db - 4.0 * breath
    response = _frame_response(numerator, denominator, tilt, nfft, sr)
    # Level control: with narrow resonances the output power would swing by >10 dB depending on
    # whether a harmonic happens to hit F1, i.e. on the speaker's f0 rather than on the phoneme.
    # Each frame is normalised so that the filtered source (harmonics of the current f0 weighted by
    # the pulse's own spectrum, plus white aspiration noise) keeps the power of the unfiltered one:
    # phoneme levels then follow level_db, stress and emotion for every voice.
    pulse_power = _pulse_harmonics(round(open_quotient, 3))
    harmonic_out, harmonic_in = _harmonic_power(
        f0_ctrl, pulse_power, (poles_f, poles_b, keep), (zeros_f, zeros_b, keep_zeros), tilt, sr
    )
    noise_in = (_BREATH_NOISE * breath) ** 2 * _pulse_tables(round(open_quotient, 3))[2]
    noise_out = noise_in * np.mean(np.abs(response) ** 2, axis=1)
    voiced_share = (1.0 - 0.4 * breath) ** 2
    power_ratio = (voiced_share * harmonic_out + noise_out) / (voiced_share * harmonic_in + noise_in)
    response *= (_VOICED_GAIN * power_ratio**-0.5)[:, None].astype(np.float32)

    # --- Frame-wise filtering and overlap-add (periodic Hann at 50 % overlap sums to one).
    padded = np.zeros((num_ctrl - 1) * hop + window, np.float32)
    padded[hop : hop + n] = source
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:num_ctrl]
    spectra = np.fft.rfft(frames * _hann(window), nfft)
    spectra *= response
    filtered = np.fft.irfft(spectra, nfft)
    out = np.zeros((num_ctrl + chunks) * hop, np.float32)
    for c in range(chunks):
        width = min(hop, nfft - c * hop)
        out.reshape(-1, hop)[c : c + num_ctrl, :width] += filtered[:, c * hop : c * hop + width]
    voiced_out = out[hop : hop + n].astype(np.float64)

    waveform = _OUTPUT_GAIN * (voiced_out + gain_s * frication)
    waveform += _NOISE_FLOOR * rng.standard_normal(n)
    peak = float(np.max(np.abs(waveform)))
    if not math.isfinite(peak):
        raise FloatingPointError(f"synthesis produced a non-finite sample for {voice} and {prosody}")
    if peak > _PEAK_LIMIT:
        waveform *= _PEAK_LIMIT / peak
    waveform = waveform.astype(np.float32)

    # --- Per-10 ms reports.
    num_frames = -(-n // hop)
    centres = (np.arange(num_frames) + 0.5) * (hop / sr)
    voiced_frames = np.interp(centres, t_samples, voicing) > 0.02
    f0_report = np.where(voiced_frames, np.interp(centres, t_ctrl, f0_ctrl), 0.0).astype(np.float32)
    framed = np.zeros(num_frames * hop, np.float64)
    framed[:n] = waveform
    counts = np.full(num_frames, hop, np.float64)
    counts[-1] = n - (num_frames - 1) * hop
    energy = np.sqrt((framed.reshape(num_frames, hop) ** 2).sum(1) / counts).astype(np.float32)
    return Speech(waveform=waveform, f0=f0_report, energy=energy, sample_rate=sr)


@functools.lru_cache(maxsize=8)
def _hann(window: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * math.pi * np.arange(window) / window)).astype(np.float32)


def _frame_response(numerator: np.ndarray, denominator: np.ndarray, tilt_db_per_octave: float,
                    nfft: int, sr: int) -> np.ndarray:
    """Per-frame complex response B(z)/B(1) * A(1)/A(z) * source tilt at the rfft bins (complex64).

    The expanded order-14 all-pole polynomial is ill-conditioned near narrow resonances, so it is
    evaluated in double precision (single precision misses F1 peaks by several dB), by FFT rather
    than a matmul so that no multi-threaded BLAS spins up inside data-loader workers. The short
    numerator is summed directly.
    """
    phasors = _bin_phasors(numerator.shape[1] - 1, nfft)
    response = np.ones((numerator.shape[0], nfft // 2 + 1), np.complex128)
    for k in range(1, numerator.shape[1]):
        response += numerator[:, k : k + 1] * phasors[k - 1]
    response /= np.fft.rfft(denominator, nfft)
    response *= denominator.sum(1, keepdims=True) / numerator.sum(1, keepdims=True)
    response *= _tilt(tilt_db_per_octave, nfft, sr)
    return response.astype(np.complex64)


@functools.lru_cache(maxsize=8)
def _bin_phasors(order: int, nfft: int) -> np.ndarray:
    """exp(-i k w) for k = 1..order at the rfft bins."""
    w = 2 * math.pi * np.arange(nfft // 2 + 1) / nfft
    return np.exp(-1j * np.outer(np.arange(1, order + 1), w))


def _harmonic_power(f0, pulse_power, poles, zeros, tilt_db_per_octave, sr):
    """Per-frame (output, input) power of a pulse train at f0 whose harmonic k carries
    `pulse_power[k - 1]`, through the DC-normalised pole-zero cascade and tilt. The responses are
    evaluated exactly at the harmonics (closed form per conjugate pole pair), since sampling them
    on FFT bins is too coarse for narrow F1 bandwidths."""
    k = np.arange(1, min(int(0.45 * sr / f0.min()), len(pulse_power)) + 1)
    freqs = f0[:, None] * k
    weight = np.where(freqs < 0.45 * sr, pulse_power[k - 1], 0.0)
    w = (2 * math.pi / sr) * freqs
    cos_w, cos_2w = np.cos(w), np.cos(2 * w)
    power = 10.0 ** ((tilt_db_per_octave / 10.0) * np.log2(np.maximum(freqs, 200.0) / 1000.0))
    power *= _pair_power(cos_w, cos_2w, *zeros, sr)
    power /= _pair_power(cos_w, cos_2w, *poles, sr)
    return (power * weight).sum(1), weight.sum(1)


def _pair_power(cos_w, cos_2w, freqs, bandwidths, keep, sr) -> np.ndarray:
    """prod_k |A_k(e^{iw})|^2 / A_k(1)^2 over the second-order sections A_k of conjugate pairs.

    |A_k|^2 = (1 + r^2)^2 - 4 (1 + r^2) r cos(w) cos(theta) + 2 r^2 (cos 2w + cos 2theta).
    """
    r = np.exp(-math.pi * bandwidths / sr)
    theta = (2 * math.pi / sr) * freqs
    a = 1.0 + r * r
    c1 = np.where(keep, 4.0 * a * r * np.cos(theta), 0.0)
    c2 = np.where(keep, 2.0 * r * r, 0.0)
    c0 = np.where(keep, a * a + c2 * np.cos(2 * theta), 1.0)
    dc = c0 - c1 + c2
    out = np.ones_like(cos_w)
    for j in range(freqs.shape[1]):
        out *= (c0[:, j : j + 1] - c1[:, j : j + 1] * cos_w + c2[:, j : j + 1] * cos_2w) / dc[:, j : j + 1]
    return out


@functools.lru_cache(maxsize=64)
def _pulse_harmonics(open_quotient: float) -> np.ndarray:
    """Power of harmonics 1, 2, ... of the glottal pulse (its tabulated period's Fourier series)."""
    derivative = _pulse_tables(open_quotient)[0]
    # Power of each harmonic's sinusoid per sample: 2 |X_k|^2 / N^2.
    return 2.0 * np.abs(np.fft.rfft(derivative)[1:]) ** 2 / len(derivative) ** 2


@functools.lru_cache(maxsize=256)
def _tilt(tilt_db_per_octave: float, nfft: int, sr: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    octaves = np.log2(np.maximum(freqs, 200.0) / 1000.0)  # re 1 kHz, flat below 200 Hz
    return (10.0 ** (tilt_db_per_octave / 20.0 * octaves)).astype(np.float32)


def _resonator_polynomial(freqs: np.ndarray, bandwidths: np.ndarray, keep: np.ndarray, sr: int) -> np.ndarray:
    """Per-frame coefficients of prod_k (1 - 2 r cos(theta) z^-1 + r^2 z^-2) over kept resonators."""
    r = np.exp(-math.pi * bandwidths / sr)
    c1 = np.where(keep, -2.0 * r * np.cos(2 * math.pi * freqs / sr), 0.0)
    c2 = np.where(keep, r * r, 0.0)
    poly = np.zeros((freqs.shape[0], 2 * freqs.shape[1] + 1))
    poly[:, 0] = 1.0
    for k in range(freqs.shape[1]):
        order = 2 * k + 1
        prev = poly[:, :order].copy()
        poly[:, 1 : order + 1] += c1[:, k : k + 1] * prev
        poly[:, 2 : order + 2] += c2[:, k : k + 1] * prev
    return poly


def _fricatives(ph, start, end, sr, n, scale, frication, noise) -> None:
    """Adds band-passed noise for every fricative, with 20 ms onset/offset ramps."""
    for k in np.flatnonzero(_IS_FRICATIVE[ph]):
        i = ph[k]
        ramp = min(0.02, (end[k] - start[k]) / 3.0)
        lo_s = max(int((start[k] - ramp) * sr), 0)
        hi_s = min(int((end[k] + ramp) * sr) + 1, n)
        if hi_s <= lo_s:
            continue
        t = np.arange(lo_s, hi_s) / sr
        env = np.interp(t, [start[k] - ramp, start[k] + ramp, end[k] - ramp, end[k] + ramp], [0, 1, 1, 0])
        lo, hi = _FRIC_BAND[i] * scale
        sos = _bandpass(round(lo, -1), round(hi, -1), sr)
        frication[lo_s:hi_s] += _FRIC_AMP[i] * 2.0 * signal.sosfilt(sos, noise[lo_s:hi_s] * env)


def _stop_releases(ph, start, end, sr, n, scale, aspiration, frication, noise) -> None:
    """Closure silence, a decaying release burst and, for p/t/k, aspiration before the next sound."""
    for k in np.flatnonzero(_IS_STOP[ph]):
        i = ph[k]
        d = end[k] - start[k]
        asp = 0.0 if _VOICED[i] else min(0.03, 0.3 * d)
        burst = min(0.012, 0.2 * d)
        release = end[k] - asp - burst
        lo_s = max(int(release * sr), 0)
        hi_s = min(int((end[k] + 0.005) * sr) + 1, n)
        if hi_s <= lo_s:
            continue
        t = np.arange(lo_s, hi_s) / sr - release
        env = np.exp(-t / (0.35 * burst)) * (t < burst + asp)
        lo, hi = _FRIC_BAND[i] * scale
        sos = _bandpass(round(lo, -1), round(hi, -1), sr)
        frication[lo_s:hi_s] += _FRIC_AMP[i] * 4.0 * signal.sosfilt(sos, noise[lo_s:hi_s] * env)
        if asp > 0:
            asp_env = np.interp(t, [0.0, burst, burst + asp, burst + asp + 0.005], [0.0, 0.12, 0.08, 0.0])
            aspiration[lo_s:hi_s] += asp_env
