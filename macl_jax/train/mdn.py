"""The `mdn` stage: mixture-density landmark and head-pose regression (MACL stage 2).

One example is a 64-frame clip with T = 60 targets (`data_pipelines.windows.MDNClips`): mel
windows, the aligned landmarks (docs/decisions.md#d7-landmark-preprocessing) with their in-plane
angle and offset, and the closed-mouth reference frame; `macl_jax.models.mdn_targets` turns a batch
into the model's inputs and target and its outputs back into landmarks. The speech branch may start
from an SFE checkpoint (`init.sfe_checkpoint`, docs/decisions.md#d1-mdn-speech-branch;
`macl_jax.checkpoint.pretrained`) and is then fine-tuned at `init.speech_lr_factor` x the learning rate.

Loss (docs/decisions.md#d3-mdn-likelihood): the exact mixture NLL, one sigma per component and output group (landmarks
| angle | offset) or per column, plus the reference's regularisers (Dirichlet prior on the mixing
weights, plain L2 norms of the sigma and mixing heads) and an optional lip-weighted L1 on the
highest-weight component (docs/decisions.md#d4-lip-l1). `loss.code_faithful` trains with the reference code's loss
(docs/decisions.md#mdn-reference-likelihood) instead; it needs `model.sigma = "shared"`.

Held-out evaluation (`macl_jax.evals.mdn`: `test` has speakers never seen in training;
`validation` has seen speakers and selects the best checkpoint by mouth distance as in the
reference): landmark and pose errors of the model and of two baselines, the exact NLL and how far
apart the mixture components are. A plot per clip of the components against the ground truth goes
to <workdir>/plots (`macl_jax.evals.mdn_plots`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import nnx

from data_pipelines import datasets
from macl_jax.checkpoint.pretrained import assign_sfe_speech, load_sfe_speech
from macl_jax.evals import mdn as mdn_evals
from macl_jax.evals.mdn import clip_fields, clip_window
from macl_jax.evals.mdn_plots import write_plots
from macl_jax.evals.sharded import ShardedEval
from macl_jax.losses import mdn_nll
from macl_jax.models.mdn import LANDMARK_DIMS, LandmarkMDN, MDNSizes
from macl_jax.models.mdn_targets import (
    INFERENCE_MODES,
    reference_input,
    reference_pose_input,
    select,
    sigmas,
    smooth_time,
    speech_input,
    target,
    to_normalised_landmarks,
    to_pixels,
)
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import fetch, fit_and_summarize
from macl_jax.train.optim import adam_l2
from macl_jax.train.runtime import runtime_mesh, training_iterator
from macl_jax.train.state import SupervisedTask, TrainState

RNG_STREAMS = ("dropout",)


def check_config(config: Any) -> None:
    if config.loss.code_faithful and config.model.sigma != "shared":
        raise ValueError(
            "config.loss.code_faithful=True reproduces the reference loss, which has one sigma per component: "
            "set --config.model.sigma=shared"
        )
    if config.infer.mode not in INFERENCE_MODES:
        raise ValueError(f"config.infer.mode={config.infer.mode!r}; choose one of {INFERENCE_MODES}")
    if config.model.speech_input not in ("audio", "other_clip"):
        raise ValueError(f"config.model.speech_input={config.model.speech_input!r}; choose 'audio' or 'other_clip'")


def make_optimizer(config: Any) -> optax.GradientTransformation:
    oc = config.optim
    return adam_l2(
        config.train.learning_rate,
        weight_decay=oc.weight_decay,
        mask_mode=oc.weight_decay_mask,
        grad_clip_norm=oc.grad_clip_norm,
        # Only a pretrained speech branch is fine-tuned slowly (the reference's "ft" mode).
        slow=lambda names: names[:1] == ["speech"],
        slow_factor=config.init.speech_lr_factor if config.init.sfe_checkpoint else 1.0,
    )


def build_task(config: Any, load_pretrained: bool = True) -> SupervisedTask:
    """The MDN task. `load_pretrained=False` skips reading `init.sfe_checkpoint` (a state restored
    from this run's own checkpoint replaces those weights anyway, e.g. at inference)."""
    check_config(config)
    sizes = MDNSizes.from_config(config.model)
    lc = config.loss
    relative = config.model.relative_pose
    dtype = compute_dtype(config.runtime.compute_dtype)
    init_from = config.init.sfe_checkpoint if load_pretrained else ""
    if init_from:
        load_sfe_speech(init_from)  # fail here, with the path in the message, rather than inside jit

    def model_fn(rngs: nnx.Rngs) -> LandmarkMDN:
        model = LandmarkMDN(sizes, dtype=dtype, rngs=rngs)
        if init_from:
            assign_sfe_speech(model, init_from)
        return model

    def loss_fn(model: LandmarkMDN, batch: dict, rngs: nnx.Rngs, train: bool):
        out = model(
            speech_input(batch, config, dtype),
            reference_input(batch, sizes.regression),
            reference_pose_input(batch, sizes),
            train=train,
            rngs=rngs,
        )
        y = target(batch, sizes.regression, relative)
        if lc.code_faithful:
            nll = mdn_nll.code_faithful_nll(out["mu"], out["logits"], out["sigma_raw"][..., 0], y)
        else:
            sigma, covariance, groups = sigmas(out, config)
            nll = mdn_nll.mixture_nll(out["mu"], out["logits"], sigma, y, groups, covariance=covariance)
        prior = mdn_nll.dirichlet_prior(out["logits"], lc.dirichlet_concentration, lc.code_faithful)
        alpha_norm = mdn_nll.parameter_l2(nnx.state(model.head.logits, nnx.Param))
        sigma_norm = mdn_nll.parameter_l2(nnx.state(model.head.sigma, nnx.Param))
        loss = nll + lc.dirichlet_weight * prior + lc.alpha_l2 * alpha_norm + lc.sigma_l2 * sigma_norm
        alpha = jax.nn.softmax(out["logits"], axis=-1)
        metrics = {"nll": nll, "dirichlet": prior, "alpha_max": jnp.mean(jnp.max(alpha, axis=-1))}
        if lc.lip_l1 > 0:
            best = mdn_nll.best_component(out["mu"], out["logits"])
            lip = mdn_nll.lip_weighted_l1(best[..., :LANDMARK_DIMS], y[..., :LANDMARK_DIMS])
            loss = loss + lc.lip_l1 * lip
            metrics["lip_l1"] = lip
        return loss, metrics

    return SupervisedTask(model_fn, loss_fn, make_optimizer(config), rng_streams=RNG_STREAMS)


def predict(task: SupervisedTask, state: TrainState, batch: dict, config: Any, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """Inference on a batch: the raw mixture, the chosen track (normalised and pixels, both smoothed
    when `infer.smooth`) and every component's (pixels, unsmoothed). `key` draws `infer.mode=sample`."""
    regression = config.model.regression
    dtype = compute_dtype(config.runtime.compute_dtype)
    sizes = MDNSizes.from_config(config.model)
    out = task.model(state)(
        speech_input(batch, config, dtype), reference_input(batch, regression), reference_pose_input(batch, sizes), train=False
    )
    chosen = select(out, config, config.infer.mode, key)
    anchor = batch if config.model.relative_pose else None
    normalised = smooth_time(to_normalised_landmarks(chosen, regression, anchor), config)
    components = to_normalised_landmarks(out["mu"], regression, anchor)  # (B, T, M, 68, 2)
    return {
        **out,
        "vector": chosen,
        "normalised": normalised,
        "pixels": to_pixels(normalised, batch),
        "component_pixels": to_pixels(components, batch),
    }


def predictor(task: SupervisedTask, config: Any) -> mdn_evals.Predict:
    """(state, batch) -> `predict`'s outputs, for the evaluators and the plots."""
    return lambda state, batch: predict(task, state, batch, config)


def build_evaluators(config: Any, task: SupervisedTask, mesh: Any) -> list[ShardedEval]:
    """The landmark evaluators (`macl_jax.evals.mdn`) of this task, for training and `macl-jax eval`."""
    return mdn_evals.build_evaluators(config, predictor(task, config), mesh)


def run(config: Any, workdir: Path) -> dict[str, Any]:
    """Trains the MDN, evaluates seen (validation) and unseen (test) speakers; returns the final metrics."""
    check_config(config)
    mesh = runtime_mesh(config)
    directory = datasets.dataset_dir(config.data)
    task = build_task(config)
    train_iter = training_iterator(datasets.clip_source(directory, "train"), config, mesh, clip_fields(clip_window(config, train=True)))
    evaluators = build_evaluators(config, task, mesh)
    result, summary = fit_and_summarize(task, config=config, workdir=workdir, train_iter=train_iter, mesh=mesh, evaluators=evaluators)
    summary |= {
        "components": config.model.components,
        "regression": config.model.regression,
        "sfe_checkpoint": config.init.sfe_checkpoint,
    }
    if result.best:
        summary["best"] = result.best
    if jax.process_index() == 0:
        summary["plots"] = write_plots(predictor(task, config), jax.tree.map(fetch, result.state), config, Path(workdir))
        logging.info("wrote %d MDN plots to %s", len(summary["plots"]), Path(workdir) / "plots")
    return summary
