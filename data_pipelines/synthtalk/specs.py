"""Named SynthTalk variants: which speakers, how many clips, what size.

A variant is a pure description; everything generated from it is a function of the variant and
its seed, so two builds of the same variant hold identical examples.

`voxceleb_like` mimics VoxCeleb2's talking-head crops: many speakers, natural (unlabelled, neutral)
speech, lively one-to-many head motion. `mead_like` mimics MEAD's front view: fewer speakers, each
reading under 8 emotions x 3 intensities (neutral has one level), calmer heads.

Splits: `train` and `validation` hold different clips of the same (training) speakers, `test` holds
speakers that never appear in training, like VoxCeleb2 dev/test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from data_pipelines.schema import EMOTIONS
from data_pipelines.synthtalk.checks import Rule, check_fields, checked, one_of

KINDS = ("voxceleb_like", "mead_like")
SIZES = ("tiny", "default")
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    kind: str  # voxceleb_like | mead_like
    size: str  # tiny | default
    num_train_speakers: int
    num_test_speakers: int
    # Clips per (speaker, condition) in train and test; a condition is an (emotion, intensity)
    # pair for mead_like and the single neutral condition for voxceleb_like. Validation holds
    # `validation_clips` per training speaker, cycling through the conditions.
    train_clips: int
    validation_clips: int
    test_clips: int
    num_frames: int = checked(Rule(lambda n: n >= 8, "must be at least 8"), default=64)
    image_size: int = checked(one_of((64, 128, 256)), default=128)
    fps: int = 25
    sample_rate: int = 16000
    seed: int = checked(Rule(lambda s: s >= 0, "must be non-negative"), default=0)
    jpeg_quality: int = 90

    def __post_init__(self):
        check_fields(self)

    @property
    def name(self) -> str:
        """`<kind>_<size>`, plus `_<N>px` for a non-default frame size and `_seed<N>` for seed != 0."""
        name = f"{self.kind}_{self.size}"
        if self.image_size != _VARIANTS[(self.kind, self.size)].get("image_size", 128):
            name += f"_{self.image_size}px"
        if self.seed:
            name += f"_seed{self.seed}"
        # Any other change (speaker or clip counts, clip length, ...) gets a content hash, so two
        # different datasets never share a name (and a directory).
        named = dataclasses.replace(self, image_size=VariantSpec.image_size, seed=0)
        reference = VariantSpec(kind=self.kind, size=self.size, **_VARIANTS[(self.kind, self.size)])
        reference = dataclasses.replace(reference, image_size=VariantSpec.image_size)
        if named != reference:
            digest = hashlib.sha1(repr(dataclasses.astuple(self)).encode()).hexdigest()[:8]
            name += f"_custom{digest}"
        return name

    @property
    def num_samples(self) -> int:
        return self.num_frames * self.sample_rate // self.fps

    @property
    def conditions(self) -> tuple[tuple[str, int], ...]:
        """(emotion, intensity) pairs every speaker records; intensity 0 = not labelled."""
        if self.kind == "voxceleb_like":
            return (("neutral", 0),)
        return (("neutral", 1),) + tuple((e, i) for e in EMOTIONS[1:] for i in (1, 2, 3))

    def speakers(self, split: str) -> range:
        """Global speaker indices of a split (train/validation share theirs)."""
        if split in ("train", "validation"):
            return range(self.num_train_speakers)
        if split == "test":
            return range(self.num_train_speakers, self.num_train_speakers + self.num_test_speakers)
        raise ValueError(f"unknown split {split!r}; SynthTalk splits are {', '.join(SPLITS)}")

    def clip_conditions(self, split: str) -> tuple[tuple[str, int], ...]:
        """The condition of each clip one speaker records in `split` (clip index -> condition)."""
        if split == "validation":
            return tuple(self.conditions[i % len(self.conditions)] for i in range(self.validation_clips))
        per_condition = {"train": self.train_clips, "test": self.test_clips}[split]
        return tuple(c for c in self.conditions for _ in range(per_condition))

    def num_clips(self, split: str) -> int:
        return len(self.speakers(split)) * len(self.clip_conditions(split))


_VARIANTS = {
    ("voxceleb_like", "tiny"): dict(
        num_train_speakers=8, num_test_speakers=4, train_clips=8, validation_clips=2, test_clips=4, image_size=64
    ),
    ("voxceleb_like", "default"): dict(
        num_train_speakers=48, num_test_speakers=12, train_clips=34, validation_clips=3, test_clips=20
    ),
    ("mead_like", "tiny"): dict(
        num_train_speakers=4, num_test_speakers=2, train_clips=1, validation_clips=2, test_clips=1, image_size=64
    ),
    ("mead_like", "default"): dict(
        num_train_speakers=36, num_test_speakers=8, train_clips=2, validation_clips=6, test_clips=2
    ),
}


def variant(kind: str, size: str = "tiny", **overrides) -> VariantSpec:
    """Returns a named variant, optionally with fields overridden (e.g. seed, image_size)."""
    if kind not in KINDS:
        raise ValueError(f"unknown SynthTalk kind {kind!r}; choose one of {', '.join(KINDS)}")
    if size not in SIZES:
        raise ValueError(f"unknown SynthTalk size {size!r}; choose one of {', '.join(SIZES)}")
    fields = {f.name for f in dataclasses.fields(VariantSpec)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown SynthTalk variant field(s) {sorted(unknown)}; valid fields: {sorted(fields)}")
    return VariantSpec(kind=kind, size=size, **{**_VARIANTS[(kind, size)], **overrides})


_NAME = re.compile(r"^(?P<kind>[a-z]+_like)_(?P<size>[a-z]+)(?:_(?P<px>\d+)px)?(?:_seed(?P<seed>\d+))?$")


def parse_name(name: str) -> VariantSpec:
    """Inverse of `VariantSpec.name`: 'mead_like_tiny', 'voxceleb_like_default_256px_seed3', ..."""
    match = _NAME.match(name)
    if not match or match["kind"] not in KINDS or match["size"] not in SIZES:
        raise ValueError(
            f"unknown SynthTalk variant {name!r}; names are <kind>_<size>[_<N>px][_seed<N>] with kind in "
            f"{KINDS} and size in {SIZES}, e.g. voxceleb_like_tiny or mead_like_default_seed1"
        )
    overrides = {"seed": int(match["seed"] or 0)}
    if match["px"]:
        overrides["image_size"] = int(match["px"])
    return variant(match["kind"], match["size"], **overrides)
