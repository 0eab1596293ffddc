"""Evaluators of the speech feature extractor: audio-visual sync and identity retrieval, and
speaker verification from audio identity embeddings (paper Table 1 and Table 3).

`SFERetrieval` runs on (audio, frames) windows of one split, without augmentation:

* sync top-1 / top-5: per clip, each audio step retrieves its video step among the S steps of the
  clip (chance 1/S and 5/S);
* identity top-1 (speaker retrieval): groups of `identity_group` *different speakers* are drawn,
  one clip per speaker; each clip's audio identity embedding retrieves its clip's video identity
  embedding within the group, so a hit means the two modalities agree on the speaker (chance
  1/group, reported as `identity_chance`). The draw is a fixed-seed function of the split's
  speaker labels, averaged over `identity_rounds` draws, and embeddings are pooled over the whole
  split first, so the figure does not depend on the batch size or the number of devices or
  processes;
* `selection_score` = sync top-1 + identity top-1, the reference's model-selection criterion.

`SpeakerVerification` needs audio only (e.g. VoxCeleb1): the embedding of an utterance is the
time-mean of its audio identity features; trials are scored by cosine similarity and summarised
by EER and minDCF (p_target 0.01 and 0.05). `SFERetrieval` computes the same verification
figures when given trials, so a held-out SynthTalk split needs a single pass.

`build_evaluators` chooses them from the config: retrieval on `validation` and, with trials, on
`eval.verification_split`; `audio_verification` scores an audio-only split. The model enters as an
`Encode` function (the trainer's `encoder`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import datasets
from data_pipelines.schema import as_text
from data_pipelines.windows import EvaluationWindows, SFEWindows
from macl_jax.evals.sharded import MEAN, POOL, ShardedEval
from macl_jax.evals.trials import Trial, cosine_scores, make_trials, read_trials, trial_indices, utterance_key
from macl_jax.losses.contrastive import diagonal_topk_accuracy, normalize, sync_contrastive_loss
from macl_jax.metrics.verification import equal_error_rate, min_dcf

# (state, audio, frames or None) -> dict with "audio_content", "audio_identity" and, with frames,
# "video_content", "video_identity" (B, S, C), plus the scalars "w_sync" used by the sync loss.
Encode = Callable[[Any, jax.Array, jax.Array | None], dict[str, jax.Array]]


def verification_metrics(embeddings: np.ndarray, utterances: Sequence[str], trials: Sequence[Trial]) -> dict[str, float]:
    enrol, test, labels = trial_indices(trials, utterances)
    scores = cosine_scores(embeddings, enrol, test)
    return {
        "eer": equal_error_rate(scores, labels),
        "min_dcf_p01": min_dcf(scores, labels, p_target=0.01),
        "min_dcf_p05": min_dcf(scores, labels, p_target=0.05),
        "num_trials": float(len(labels)),
    }


def speaker_identity_top1(
    audio: np.ndarray, video: np.ndarray, speakers: Sequence[str], group: int, *, rounds: int = 20, seed: int = 0
) -> tuple[float, float]:
    """(top-1, chance) of audio -> video identity retrieval among clips of different speakers.

    Each round shuffles the speakers into groups of `group` (the last group takes the remainder;
    a group of one speaker is skipped) and picks one clip per speaker; within a group every audio
    embedding retrieves among the group's video embeddings by cosine similarity. Clips of one
    speaker never compete with each other, so the figure measures speaker identity, not which of a
    speaker's clips is which. Chance is the mean of 1/|group| over the queries.
    """
    speakers = np.asarray(list(speakers))
    if len(speakers) != len(audio) or len(audio) != len(video):
        raise ValueError(f"{len(audio)} audio and {len(video)} video embeddings for {len(speakers)} speaker labels")
    names, labels = np.unique(speakers, return_inverse=True)
    if len(names) < 2:
        raise ValueError("speaker identity retrieval needs at least two speakers in the split")
    clips = [np.flatnonzero(labels == s) for s in range(len(names))]
    a = np.asarray(normalize(jnp.asarray(audio, jnp.float32)))
    v = np.asarray(normalize(jnp.asarray(video, jnp.float32)))
    rng = np.random.default_rng(seed)
    hits, queries = 0.0, 0
    for _ in range(rounds):
        order = rng.permutation(len(names))
        picks = np.array([rng.choice(clips[s]) for s in order])
        for start in range(0, len(picks), group):
            chosen = picks[start : start + group]
            if len(chosen) < 2:
                continue
            cos = a[chosen] @ v[chosen].T
            hits += float(np.sum(np.argmax(cos, axis=1) == np.arange(len(chosen))))
            queries += len(chosen)
    return hits / queries, _chance(len(names), group)


def _chance(num_speakers: int, group: int) -> float:
    """Mean 1/|group| over queries when `num_speakers` are split into groups of `group`."""
    sizes = [min(group, num_speakers - start) for start in range(0, num_speakers, group)]
    sizes = [n for n in sizes if n >= 2]
    return len(sizes) / sum(sizes)


class SFERetrieval:
    """Sync and identity retrieval on audio-visual windows, optionally with verification trials."""

    reductions = {
        "sync_loss": MEAN,
        "sync_top1": MEAN,
        "sync_top5": MEAN,
        "audio_identity": POOL,
        "video_identity": POOL,
    }

    def __init__(
        self,
        name: str,
        encode: Encode,
        *,
        direction: str = "audio_to_video",
        speakers: Sequence[str],
        identity_group: int = 16,
        identity_rounds: int = 20,
        utterances: Sequence[str] = (),
        trials: Sequence[Trial] = (),
    ):
        self.name = name
        self._encode = encode
        self._direction = direction
        self._speakers = list(speakers)
        self._group = identity_group
        self._rounds = identity_rounds
        self._utterances = list(utterances)
        self._trials = list(trials)

    def per_example(self, state: Any, batch: Any) -> dict[str, jax.Array]:
        out = self._encode(state, batch["audio"], batch["frames"])
        _, sync = sync_contrastive_loss(
            out["audio_content"], out["video_content"], out["w_sync"], out["b_sync"], direction=self._direction
        )
        return {
            "sync_loss": sync["sync_loss"],
            "sync_top1": sync["sync_top1"],
            "sync_top5": sync["sync_top5"],
            "audio_identity": jnp.mean(out["audio_identity"], axis=1),
            "video_identity": jnp.mean(out["video_identity"], axis=1),
        }

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        identity_top1, identity_chance = speaker_identity_top1(
            reduced["audio_identity"], reduced["video_identity"], self._speakers, self._group, rounds=self._rounds
        )
        metrics = {
            "sync_loss": reduced["sync_loss"],
            "sync_top1": reduced["sync_top1"],
            "sync_top5": reduced["sync_top5"],
            "identity_top1": identity_top1,
            "identity_chance": identity_chance,
            "selection_score": reduced["sync_top1"] + identity_top1,
            "count": reduced["sync_top1/count"],
        }
        if self._trials:
            metrics.update(verification_metrics(reduced["audio_identity"], self._utterances, self._trials))
        return metrics


class SpeakerVerification:
    """EER / minDCF of audio identity embeddings on a trial list (audio-only windows)."""

    reductions = {"audio_identity": POOL}

    def __init__(self, name: str, encode: Encode, utterances: Sequence[str], trials: Sequence[Trial]):
        if not trials:
            raise ValueError(f"{name}: speaker verification needs a non-empty trial list")
        self.name = name
        self._encode = encode
        self._utterances = list(utterances)
        self._trials = list(trials)
        trial_indices(self._trials, self._utterances)  # fail now, not after a full pass

    def per_example(self, state: Any, batch: Any) -> dict[str, jax.Array]:
        out = self._encode(state, batch["audio"], None)
        return {"audio_identity": jnp.mean(out["audio_identity"], axis=1)}

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        return verification_metrics(reduced["audio_identity"], self._utterances, self._trials)


@functools.lru_cache(maxsize=8)
def split_labels(directory: str, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(clip ids, speaker ids) of a split, in source order."""
    source = datasets.clip_source(directory, split)
    rows = [source[i] for i in range(len(source))]
    return tuple(as_text(r["clip_id"]) for r in rows), tuple(as_text(r["speaker_id"]) for r in rows)


def verification_trials(config: Any, directory: str, split: str) -> tuple[tuple[str, ...], list[Trial]]:
    """Trials for `split`: a VoxCeleb1-format file, `metadata:<list>` (a list stored by the
    voxceleb1 builder, e.g. metadata:veri_test), or "" for balanced trials over its speakers."""
    utterances, speakers = split_labels(directory, split)
    spec = config.eval.trials
    if spec.startswith("metadata:"):
        name = spec.partition(":")[2]
        stored = datasets.metadata(directory).get("trials", {})
        if name not in stored:
            raise KeyError(f"config.eval.trials={spec!r}: {directory} stores trial lists {sorted(stored) or 'none'}")
        return utterances, [Trial(int(label), utterance_key(a), utterance_key(b)) for label, a, b in stored[name]]
    if spec:
        return utterances, read_trials(spec)
    return utterances, make_trials(utterances, speakers, max_target=config.eval.max_target_trials, seed=0)


def build_evaluators(config: Any, encode: Encode, mesh: Any) -> list[ShardedEval]:
    """Retrieval on `validation`, and retrieval with speaker verification on `eval.verification_split`."""
    directory = datasets.dataset_dir(config.data)
    wc = config.windows
    window = SFEWindows(num_steps=wc.num_steps, stride=wc.stride, train=False, frame_size=wc.frame_size)
    common = dict(
        direction=config.loss.sync_direction,
        identity_group=config.eval.identity_group,
        identity_rounds=config.eval.identity_rounds,
    )
    batch = config.eval.global_batch_size
    available = datasets.splits(directory)
    evaluators = []
    if "validation" in available:
        evaluators.append(
            ShardedEval(
                SFERetrieval("validation", encode, speakers=split_labels(directory, "validation")[1], **common),
                EvaluationWindows(datasets.clip_source(directory, "validation"), window),
                batch,
                mesh,
            )
        )
    split = config.eval.verification_split
    if split in available:
        utterances, trials = verification_trials(config, directory, split)
        evaluators.append(
            ShardedEval(
                SFERetrieval(split, encode, speakers=split_labels(directory, split)[1], utterances=utterances, trials=trials, **common),
                EvaluationWindows(datasets.clip_source(directory, split), window),
                batch,
                mesh,
                # Same per-example computation on another split: one compilation serves both.
                reducer=evaluators[0].reducer if evaluators else None,
            )
        )
    return evaluators


def audio_verification(config: Any, encode: Encode, mesh: Any, directory: str, split: str) -> ShardedEval:
    """Speaker verification on an audio-only split (e.g. VoxCeleb1 test with its official trials)."""
    wc = config.windows
    window = SFEWindows(num_steps=wc.num_steps, stride=wc.stride, train=False, frames=False)
    utterances, trials = verification_trials(config, directory, split)
    evaluator = SpeakerVerification(f"verification_{split}", encode, utterances, trials)
    return ShardedEval(evaluator, EvaluationWindows(datasets.clip_source(directory, split), window), config.eval.global_batch_size, mesh)
