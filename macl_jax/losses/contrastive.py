"""Audio-visual contrastive losses of the MACL speech feature extractor (paper eq. (3)-(4)).

Both losses score cosine similarities scaled by a learnable `w` and shifted by a learnable `b`:
`S(q, k) = exp(w * cos(q, k) + b)`, and take a cross-entropy whose targets sit on the diagonal.

* Content (sync) loss: per clip, an S x S matrix between the S audio steps and the S video steps
  of the same clip; negatives are the other steps of that clip (shifts of 3 frames). Computed for
  the whole batch at once as a (B, S, S) einsum.
* Identity loss: one B x B matrix between audio and video identity features of the clips of the
  batch; negatives are the other clips. Under `jax.jit` over a batch sharded across devices and
  processes, the matrix spans the global batch (XLA gathers the keys), so the loss does not
  depend on the device count; `groups > 1` restricts negatives to `groups` consecutive blocks of
  the batch, which reproduces the reference's per-GPU negatives (DataParallel) with one block per
  GPU.

Direction: the paper's eq. (3) takes the speech feature as the query and normalises over image
features (`audio_to_video`, the default); the reference code does the opposite
(`video_to_audio`); `symmetric` averages both. `b` shifts a whole row of logits, so its gradient
is exactly zero; it is kept because the paper defines it.

All functions compute in float32 and are pure.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Direction = Literal["audio_to_video", "video_to_audio", "symmetric"]
DIRECTIONS = ("audio_to_video", "video_to_audio", "symmetric")

# torch.nn.functional.cosine_similarity's default epsilon (the reference's).
COSINE_EPS = 1e-8


def normalize(x: jax.Array, eps: float = COSINE_EPS) -> jax.Array:
    """x / max(|x|, eps) along the last axis, in float32."""
    x = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def cross_entropy_diagonal(logits: jax.Array) -> jax.Array:
    """Mean over rows of -log softmax(row)[row index]: logits (..., N, N) -> (...)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.diagonal(log_probs, axis1=-2, axis2=-1), axis=-1)


def diagonal_topk_accuracy(logits: jax.Array, k: int) -> jax.Array:
    """Share of rows whose diagonal entry is among the row's k largest: (..., N, N) -> (...).

    Ties count against the query (a constant row scores 0), so a collapsed model cannot look good.
    """
    diag = jnp.diagonal(logits, axis1=-2, axis2=-1)[..., None]
    rank = jnp.sum(logits >= diag, axis=-1) - 1  # entries at least as large, excluding itself
    return jnp.mean((rank < k).astype(jnp.float32), axis=-1)


def _directed_loss(query_by_key: jax.Array, direction: str) -> tuple[jax.Array, jax.Array]:
    """(loss, logits of the first direction) for a (..., N, N) audio-by-video logit matrix."""
    if direction == "audio_to_video":
        return cross_entropy_diagonal(query_by_key), query_by_key
    video_by_audio = jnp.swapaxes(query_by_key, -1, -2)
    if direction == "video_to_audio":
        return cross_entropy_diagonal(video_by_audio), video_by_audio
    if direction == "symmetric":
        loss = 0.5 * (cross_entropy_diagonal(query_by_key) + cross_entropy_diagonal(video_by_audio))
        return loss, query_by_key
    raise ValueError(f"unknown contrastive direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")


def sync_logits(audio: jax.Array, video: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """(B, S, S) logits w * cos(audio[b, i], video[b, j]) + b; rows are audio steps."""
    return w * jnp.einsum("bic,bjc->bij", normalize(audio), normalize(video)) + b


def sync_contrastive_loss(
    audio: jax.Array, video: jax.Array, w: jax.Array, b: jax.Array, *, direction: Direction = "audio_to_video"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Content contrastive loss, eq. (3): audio and video content features (B, S, C) -> scalar.

    Returns per-clip metrics too: top-1 and top-5 accuracy of the queries (B,).
    """
    if audio.shape != video.shape or audio.ndim != 3:
        raise ValueError(f"sync loss needs audio and video features of one shape (B, S, C); got {audio.shape}, {video.shape}")
    per_clip, logits = _directed_loss(sync_logits(audio, video, w, b), direction)
    metrics = {
        "sync_loss": per_clip,
        "sync_top1": diagonal_topk_accuracy(logits, 1),
        "sync_top5": diagonal_topk_accuracy(logits, min(5, logits.shape[-1])),
    }
    return jnp.mean(per_clip), metrics


def identity_logits(audio: jax.Array, video: jax.Array, w: jax.Array, b: jax.Array, groups: int = 1) -> jax.Array:
    """(G, B/G, B/G) logits between audio (B, C) and video (B, C) identity features of each block."""
    batch = audio.shape[0]
    if batch % groups:
        raise ValueError(f"identity loss: batch {batch} is not divisible into {groups} negative groups")
    a = normalize(audio).reshape(groups, batch // groups, -1)
    v = normalize(video).reshape(groups, batch // groups, -1)
    return w * jnp.einsum("gic,gjc->gij", a, v) + b


def identity_contrastive_loss(
    audio: jax.Array,
    video: jax.Array,
    w: jax.Array,
    b: jax.Array,
    *,
    direction: Direction = "audio_to_video",
    groups: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Identity contrastive loss over the batch: audio and video identity features (B, C) -> scalar.

    Metrics are per block of negatives (G,): top-1 and top-3 accuracy (the reference's).
    """
    if audio.shape != video.shape or audio.ndim != 2:
        raise ValueError(f"identity loss needs features of one shape (B, C); got {audio.shape}, {video.shape}")
    per_group, logits = _directed_loss(identity_logits(audio, video, w, b, groups), direction)
    metrics = {
        "identity_top1": diagonal_topk_accuracy(logits, 1),
        "identity_top3": diagonal_topk_accuracy(logits, min(3, logits.shape[-1])),
    }
    return jnp.mean(per_group), metrics
