"""Speaker-verification trial lists in the VoxCeleb1 format, read and generated.

A trial list has one trial per line, `label enrolment test`, with label 1 for a target trial
(same speaker) and 0 otherwise, and utterances named by their path relative to the dataset root:

    1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav

Utterances are matched to clips by `utterance_key`: the path without its extension, with `/`
separators, so `id10270/x6uYqmx31kE/00001.wav` names the clip `id10270/x6uYqmx31kE/00001`.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from macl_jax.media.atomic import atomic_output


@dataclasses.dataclass(frozen=True)
class Trial:
    label: int
    enrolment: str
    test: str


def utterance_key(path: str) -> str:
    """`id1/vid/00001.wav` -> `id1/vid/00001` (separators normalised, extension dropped)."""
    key = str(path).strip().replace("\\", "/")
    root, ext = os.path.splitext(key)
    return root if ext.lower() in (".wav", ".m4a", ".mp4", ".flac", ".aac") else key


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """Parses a VoxCeleb1-format trial list; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trial list {path} does not exist; point config.eval.trials at a VoxCeleb1-format file")
    trials = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: expected 'label path1 path2' with label 0 or 1, got {line!r}")
        trials.append(Trial(int(parts[0]), utterance_key(parts[1]), utterance_key(parts[2])))
    if not trials:
        raise ValueError(f"trial list {path} has no trials")
    return trials


def write_trials(path: str | os.PathLike, trials: Sequence[Trial]) -> Path:
    """Writes `trials` atomically in the VoxCeleb1 format."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{t.label} {t.enrolment} {t.test}\n" for t in trials))
    return path


def make_trials(
    utterances: Sequence[str], speakers: Sequence[str], *, max_target: int | None = None, seed: int = 0
) -> list[Trial]:
    """Balanced trials over `utterances` of known `speakers` (e.g. held-out SynthTalk speakers).

    All same-speaker pairs are target trials (a random subset of `max_target` if given); as many
    different-speaker pairs are drawn at random without repetition. Deterministic in `seed`.
    """
    if len(utterances) != len(speakers):
        raise ValueError(f"{len(utterances)} utterances but {len(speakers)} speaker labels")
    if len(set(speakers)) < 2:
        raise ValueError("verification trials need at least two speakers")
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(len(utterances)), 2))
    same = [p for p in pairs if speakers[p[0]] == speakers[p[1]]]
    different = [p for p in pairs if speakers[p[0]] != speakers[p[1]]]
    if not same:
        raise ValueError("no speaker has two utterances: no target trials are possible")
    if max_target is not None and len(same) > max_target:
        same = [same[i] for i in sorted(rng.choice(len(same), max_target, replace=False))]
    n_diff = min(len(same), len(different))
    different = [different[i] for i in sorted(rng.choice(len(different), n_diff, replace=False))]
    trials = [Trial(1, utterances[a], utterances[b]) for a, b in same]
    trials += [Trial(0, utterances[a], utterances[b]) for a, b in different]
    order = rng.permutation(len(trials))
    return [trials[i] for i in order]


def trial_indices(trials: Sequence[Trial], utterances: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(enrolment index, test index, label) arrays; every trial utterance must be among `utterances`."""
    position = {utterance_key(u): i for i, u in enumerate(utterances)}
    missing = sorted({u for t in trials for u in (t.enrolment, t.test) if u not in position})
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise KeyError(
            f"{len(missing)} trial utterance(s) are not in the evaluated split ({shown}); the trial list and the "
            "dataset must come from the same release (utterances are matched by path without extension)"
        )
    enrol = np.array([position[t.enrolment] for t in trials], np.int64)
    test = np.array([position[t.test] for t in trials], np.int64)
    return enrol, test, np.array([t.label for t in trials], np.int64)


def cosine_scores(embeddings: np.ndarray, enrol: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings."""
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return np.sum(e[enrol] * e[test], axis=-1)
