"""Evaluators of the speech feature extractor: audio-visual sync and identity retrieval, and
speaker verification from audio identity embeddings (paper Table 1 and Table 3).

`SFERetrieval` runs on (audio, frames) windows of one split, without augmentation:

* sync top-1 / top-5: per clip, each audio step retrieves its video step among the S steps of the
  clip (chance 1/S and 5/S);
* identity top-1: each clip's audio identity embedding retrieves its clip's video identity
  embedding among `identity_group` clips. Embeddings are pooled over the whole split and grouped
  in split order, so the figure does not depend on the evaluation batch size or the number of
  devices or processes;
* `selection_score` = sync top-1 + identity top-1, the reference's model-selection criterion.

`SpeakerVerification` needs audio only (e.g. VoxCeleb1): the embedding of an utterance is the
time-mean of its audio identity features; trials are scored by cosine similarity and summarised
by EER and minDCF (p_target 0.01 and 0.05). `SFERetrieval` computes the same verification
figures when given trials, so a held-out SynthTalk split needs a single pass.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.evals.sharded import MEAN, POOL
from macl_jax.evals.trials import Trial, cosine_scores, trial_indices
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


def grouped_identity_top1(audio: np.ndarray, video: np.ndarray, group: int) -> float:
    """Mean top-1 of audio -> video retrieval within consecutive groups of `group` clips.

    The last group may be smaller; groups of one clip are skipped (nothing to retrieve from).
    """
    hits, total = 0.0, 0
    for start in range(0, len(audio), group):
        a, v = audio[start : start + group], video[start : start + group]
        if len(a) < 2:
            continue
        logits = np.asarray(normalize(jnp.asarray(a)) @ normalize(jnp.asarray(v)).T)
        hits += float(diagonal_topk_accuracy(jnp.asarray(logits), 1)) * len(a)
        total += len(a)
    return hits / total if total else float("nan")


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
        identity_group: int = 16,
        utterances: Sequence[str] = (),
        trials: Sequence[Trial] = (),
    ):
        self.name = name
        self._encode = encode
        self._direction = direction
        self._group = int(identity_group)
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
        identity_top1 = grouped_identity_top1(reduced["audio_identity"], reduced["video_identity"], self._group)
        metrics = {
            "sync_loss": reduced["sync_loss"],
            "sync_top1": reduced["sync_top1"],
            "sync_top5": reduced["sync_top5"],
            "identity_top1": identity_top1,
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
