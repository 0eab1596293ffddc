"""The `sfe` stage: memory-augmented audio-visual contrastive pretraining (MACL stage 1).

One step: uint8 frame stacks are augmented per frame on the device (random grey, colour jitter),
ImageNet-normalised, and encoded by the 3-D ResNet; mel windows go through the speech branch
(encoder, Bi-GRU, memory read-outs). The loss is the content (sync) contrastive loss over the S
steps of each clip plus the identity contrastive loss over the global batch (macl_jax.losses.contrastive).
Validation is deterministic; the best state by sync top-1 + speaker-identity top-1 is kept under
<workdir>/best. Held-out speakers are evaluated for sync retrieval and speaker verification
(`macl_jax.evals.sfe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from data_pipelines import datasets
from data_pipelines.windows import SFEWindows
from macl_jax.evals import sfe as sfe_evals
from macl_jax.evals.sharded import ShardedEval
from macl_jax.losses.contrastive import identity_contrastive_loss, sync_contrastive_loss
from macl_jax.media.augment import imagenet_normalize, sfe_augment, to_unit
from macl_jax.models.sfe import SFESizes, SpeechFeatureExtractor
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import fit_and_summarize
from macl_jax.train.optim import adam_l2
from macl_jax.train.runtime import runtime_mesh, training_iterator
from macl_jax.train.state import SupervisedTask, TrainState

RNG_STREAMS = ("dropout", "augment", "identity")


class SFEPretraining(nnx.Module):
    """The SFE plus the learnable (w, b) of each contrastive loss (eq. (4))."""

    def __init__(self, sizes: SFESizes, *, memory: str, init_scale: float, init_bias: float, dtype: Any, rngs: nnx.Rngs):
        self.sfe = SpeechFeatureExtractor(sizes, memory=memory, dtype=dtype, rngs=rngs)
        self.sync_scale = nnx.Param(jnp.array([init_scale, init_bias], jnp.float32))
        self.identity_scale = nnx.Param(jnp.array([init_scale, init_bias], jnp.float32))


def steps_per_epoch(config: Any) -> int:
    directory = datasets.dataset_dir(config.data)
    return max(1, datasets.splits(directory)["train"] // config.train.global_batch_size)


def make_optimizer(config: Any, epoch_steps: int) -> optax.GradientTransformation:
    """Adam with coupled L2 (torch Adam's weight_decay) and the reference's one LR drop."""
    oc = config.optim
    drop = oc.lr_drop_epochs * epoch_steps
    schedule = optax.piecewise_constant_schedule(config.train.learning_rate, {drop: oc.lr_drop_factor} if drop > 0 else None)
    return adam_l2(schedule, weight_decay=oc.weight_decay, mask_mode=oc.weight_decay_mask, grad_clip_norm=oc.grad_clip_norm)


def prepare_frames(frames: jax.Array, key: jax.Array | None, config: Any, dtype: Any) -> jax.Array:
    """uint8 (B, S, 5, H, W, 3) -> ImageNet-normalised frames, augmented when `key` is given."""
    ac = config.augment
    if key is not None and ac.enabled:
        unit = sfe_augment(key, frames, grey_p=ac.grey_p, jitter=ac.jitter)
    else:
        unit = to_unit(frames)
    return imagenet_normalize(unit, dtype)


def build_task(config: Any, epoch_steps: int | None = None) -> SupervisedTask:
    mc, lc = config.model, config.loss
    dtype = compute_dtype(config.runtime.compute_dtype)
    sizes = SFESizes.from_config(mc)

    def model_fn(rngs: nnx.Rngs) -> SFEPretraining:
        return SFEPretraining(sizes, memory=mc.memory, init_scale=lc.init_scale, init_bias=lc.init_bias, dtype=dtype, rngs=rngs)

    def loss_fn(model: SFEPretraining, batch: dict, rngs: nnx.Rngs, train: bool):
        frames = prepare_frames(batch["frames"], rngs.augment() if train else None, config, dtype)
        out = model.sfe(batch["audio"].astype(dtype), frames, train=train, rngs=rngs)
        w_sync, b_sync = model.sync_scale[...][0], model.sync_scale[...][1]
        w_id, b_id = model.identity_scale[...][0], model.identity_scale[...][1]
        sync_loss, sync = sync_contrastive_loss(
            out["audio_content"], out["video_content"], w_sync, b_sync, direction=lc.sync_direction
        )
        audio_id = jnp.mean(out["audio_identity"], axis=1)
        if lc.identity_visual == "random_step":
            step = jax.random.randint(rngs.identity(), (), 0, out["video_identity"].shape[1])
            video_id = out["video_identity"][:, step]
        elif lc.identity_visual == "mean":
            video_id = jnp.mean(out["video_identity"], axis=1)
        else:
            raise ValueError(f"config.loss.identity_visual must be 'random_step' or 'mean', got {lc.identity_visual!r}")
        id_loss, ident = identity_contrastive_loss(
            audio_id, video_id, w_id, b_id, direction=lc.identity_direction, groups=lc.identity_groups
        )
        loss = lc.sync_weight * sync_loss + lc.identity_weight * id_loss
        metrics = {
            "sync_loss": sync_loss,
            "identity_loss": id_loss,
            "sync_top1": jnp.mean(sync["sync_top1"]),
            "sync_top5": jnp.mean(sync["sync_top5"]),
            "identity_top1": jnp.mean(ident["identity_top1"]),
            "w_sync": w_sync,
            "w_identity": w_id,
        }
        for name in ("audio_content_address", "audio_identity_address"):
            if name in out:  # how peaked the memory addressing is (entropy in nats; log k = uniform)
                p = out[name]
                metrics[f"{name}_entropy"] = jnp.mean(-jnp.sum(p * jnp.log(p + 1e-12), axis=-1))
        return loss, metrics

    epoch_steps = steps_per_epoch(config) if epoch_steps is None and config.optim.lr_drop_epochs > 0 else (epoch_steps or 1)
    return SupervisedTask(model_fn, loss_fn, make_optimizer(config, epoch_steps), rng_streams=RNG_STREAMS)


def encoder(task: SupervisedTask, config: Any) -> sfe_evals.Encode:
    """(state, audio, frames|None) -> features for the evaluators (no dropout, no augmentation)."""
    dtype = compute_dtype(config.runtime.compute_dtype)

    def encode(state: TrainState, audio: jax.Array, frames: jax.Array | None) -> dict[str, jax.Array]:
        model = task.model(state)
        if frames is None:
            a = model.sfe.encode_audio(audio.astype(dtype), train=False)
            return {"audio_content": a["content"], "audio_identity": a["identity"]}
        out = model.sfe(audio.astype(dtype), prepare_frames(frames, None, config, dtype), train=False)
        scale = model.sync_scale[...]
        return {**out, "w_sync": scale[0], "b_sync": scale[1]}

    return encode


def build_evaluators(config: Any, task: SupervisedTask, mesh: Any) -> list[ShardedEval]:
    """The retrieval and verification evaluators (`macl_jax.evals.sfe`) of this task, for training and `macl-jax eval`."""
    return sfe_evals.build_evaluators(config, encoder(task, config), mesh)


def run(config: Any, workdir: Path) -> dict[str, Any]:
    """Trains the SFE, evaluates validation and held-out speakers; returns the final metrics."""
    mesh = runtime_mesh(config)
    directory = datasets.dataset_dir(config.data)
    train_source = datasets.clip_source(directory, "train")
    task = build_task(config, epoch_steps=max(1, len(train_source) // config.train.global_batch_size))
    wc = config.windows
    window = SFEWindows(num_steps=wc.num_steps, stride=wc.stride, train=True, frame_size=wc.frame_size)
    train_iter = training_iterator(train_source, config, mesh, window)
    evaluators = build_evaluators(config, task, mesh)
    result, summary = fit_and_summarize(
        task, config=config, workdir=workdir, train_iter=train_iter, mesh=mesh, evaluators=evaluators
    )
    summary |= {
        "memory": config.model.memory,
        "num_steps_window": wc.num_steps,
        "sync_chance": 1.0 / wc.num_steps,
    }
    if result.best:
        summary["best"] = result.best
    return summary
