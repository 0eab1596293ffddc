"""The `mdn` stage: mixture-density landmark and head-pose regression (MACL stage 2).

One example is a 64-frame clip with T = 60 targets (`data_pipelines.windows.MDNClips`): mel
windows, the aligned landmarks (docs/decisions.md#d7-landmark-preprocessing) with their in-plane
angle and offset, and the closed-mouth reference frame. The speech branch may start from an SFE checkpoint (`init.sfe_checkpoint`,
docs/decisions.md#d1-mdn-speech-branch) and is then fine-tuned at `init.speech_lr_factor` x the learning rate.

Loss (docs/decisions.md#d3-mdn-likelihood): the exact mixture NLL, one sigma per component and output group (landmarks
| angle | offset) or per column, plus the reference's regularisers (Dirichlet prior on the mixing
weights, plain L2 norms of the sigma and mixing heads) and an optional lip-weighted L1 on the
highest-weight component (docs/decisions.md#d4-lip-l1). `loss.code_faithful` trains with the reference code's loss
(docs/decisions.md#mdn-reference-likelihood) instead; it needs `model.sigma = "shared"`.

Held-out evaluation (`test`: speakers never seen in training; `validation`: seen speakers, used
for best-checkpoint selection by mouth distance as in the reference): M-LMD, F-LMD, mouth
landmark velocity error and the in-plane rotation distance, in pixels of a 256 px crop, for the
model and for two baselines; the exact NLL and how far apart the mixture components are. A plot
per clip of the components against the ground truth goes to <workdir>/plots.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from flax import nnx
from PIL import Image

from data_pipelines import datasets
from data_pipelines.windows import EvaluationWindows, KeepFields, MDNClips
from macl_jax.evals.sharded import MEAN, ShardedEval
from macl_jax.geometry import align_2d, dealign_2d, denormalise_scale, savgol_smooth
from macl_jax.losses import mdn_nll
from macl_jax.metrics import landmarks as lmk
from macl_jax.models.mdn import GROUPS, LANDMARK_DIMS, NUM_POINTS, LandmarkMDN, MDNSizes
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import fetch, fit_and_summarize
from macl_jax.train.optim import adam_l2
from macl_jax.train.runtime import runtime_mesh, training_iterator
from macl_jax.train.state import SupervisedTask, TrainState

RNG_STREAMS = ("dropout",)
FIELDS = ("audio", "landmarks", "aligned", "angle", "translation", "reference", "reference_index", "scale", "offset")
INFERENCE_MODES = ("max_alpha", "mean", "sample")
# Metrics are reported in pixels of a crop of this size (docs/decisions.md#d10-landmark-metrics: 256 x 256).
METRIC_CROP_PX = 256


class MDNInitError(ValueError):
    """The SFE checkpoint given to initialise the speech branch is missing or does not fit."""


def model_sizes(config: Any) -> MDNSizes:
    return MDNSizes.from_config(config.model)


def check_config(config: Any) -> None:
    if bool(config.loss.code_faithful) and str(config.model.sigma) != "shared":
        raise ValueError(
            "config.loss.code_faithful=True reproduces the reference loss, which has one sigma per component: "
            "set --config.model.sigma=shared"
        )
    if str(config.infer.mode) not in INFERENCE_MODES:
        raise ValueError(f"config.infer.mode={config.infer.mode!r}; choose one of {INFERENCE_MODES}")
    if config.model.speech_input not in ("audio", "other_clip"):
        raise ValueError(f"config.model.speech_input={config.model.speech_input!r}; choose 'audio' or 'other_clip'")


# ----------------------------------------------------------------------------- SFE initialisation


def _sfe_state_dir(path: epath.Path) -> epath.Path:
    """A checkpoint step's `state` directory from an SFE workdir, a checkpoints/best dir or a step dir."""
    if (path / "state").is_dir():
        return path / "state"
    for parent in (path / "best", path / "checkpoints", path):
        if parent.is_dir():
            steps = sorted((int(p.name), p) for p in parent.iterdir() if p.name.isdigit() and (p / "state").is_dir())
            if steps:
                return steps[-1][1] / "state"
    raise MDNInitError(
        f"config.init.sfe_checkpoint={str(path)!r}: no SFE checkpoint there (looked for <dir>/state, best/<step>, "
        "checkpoints/<step>); train one with `macl-jax sfe` or set --config.init.sfe_checkpoint=''"
    )


@functools.lru_cache(maxsize=2)
def load_sfe_speech(path: str) -> tuple[str, dict, dict]:
    """(state dir, params, batch statistics) of an SFE checkpoint's speech branch, as nested dicts of numpy arrays."""
    import orbax.checkpoint as ocp

    # epath: the SFE run may live on a bucket (gs://...) like any workdir.
    state_dir = _sfe_state_dir(epath.Path(path if "://" in path else os.path.abspath(os.path.expanduser(path))))
    try:
        tree = ocp.StandardCheckpointer().restore(state_dir)
    except Exception as error:  # orbax raises several types for damaged or foreign directories
        raise MDNInitError(f"cannot read the SFE checkpoint {state_dir} ({error}); point config.init.sfe_checkpoint at another step") from error
    try:
        params, stats = tree["params"]["sfe"]["speech"], tree["model_state"]["sfe"]["speech"]
    except (KeyError, TypeError):
        raise MDNInitError(f"{state_dir} is not an SFE checkpoint (no params/sfe/speech); config.init.sfe_checkpoint must name an `sfe` run") from None
    host = lambda t: jax.tree.map(np.asarray, t)
    return str(state_dir), host(params), host(stats)


def _fill(pure: Any, loaded: Any, where: str, source: str) -> Any:
    """`pure` (nnx.to_pure_dict) with every leaf replaced by `loaded`'s (orbax leaves are {"value": x})."""
    if isinstance(pure, dict):
        if not isinstance(loaded, dict):
            raise MDNInitError(f"{source}: {where or 'speech'} is not a module in the SFE checkpoint")
        missing = sorted(str(k) for k in pure if str(k) not in loaded)
        if missing:
            raise MDNInitError(
                f"{source}: the SFE checkpoint has no {', '.join(f'{where}/{m}' for m in missing)}; the SFE and the MDN "
                "must use the same speech sizes and memory variant (docs/decisions.md#d1-mdn-speech-branch: set config.model like the SFE's)"
            )
        return {k: _fill(v, loaded[str(k)], f"{where}/{k}", source) for k, v in pure.items()}
    value = loaded["value"] if isinstance(loaded, dict) and "value" in loaded else loaded
    if np.shape(value) != np.shape(pure):
        raise MDNInitError(
            f"{source}: {where} has shape {np.shape(value)} in the SFE checkpoint but {np.shape(pure)} in this MDN; "
            "set config.model's speech sizes (encoder_channels, gru_hidden, slots, slot_dim, head_hidden) to the SFE's"
        )
    return jnp.asarray(value, dtype=pure.dtype)


def assign_sfe_speech(model: LandmarkMDN, path: str) -> None:
    """Loads the speech branch (WavEncoder, Bi-GRU, addressing heads, banks, BN statistics) of an SFE."""
    source, params, stats = load_sfe_speech(path)
    for kind, loaded in ((nnx.Param, params), (nnx.BatchStat, stats)):
        state = nnx.state(model.speech, kind)
        nnx.replace_by_pure_dict(state, _fill(nnx.to_pure_dict(state), loaded, "", source))
        nnx.update(model.speech, state)


# ----------------------------------------------------------------------------- targets and decoding


def reference_pose(batch: dict) -> tuple[jax.Array, jax.Array]:
    """(angle (B,), offset (B, 2)) of each clip's reference frame."""
    rows = jnp.arange(batch["angle"].shape[0])
    ref = batch["reference_index"]
    return batch["angle"][rows, ref], batch["translation"][rows, ref]


def normalised_landmarks(batch: dict) -> jax.Array:
    """(B, T, 68, 2) landmarks in clip-normalised units (before the per-frame alignment)."""
    return batch["landmarks"] / batch["scale"][:, None, None, None] - batch["offset"][:, None, None, :]


def reference_input(batch: dict, regression: str) -> jax.Array:
    """The reference face the model sees: aligned (f_tt) or as it is in the clip, pose included (f_a)."""
    if regression == "tt":
        return batch["reference"]
    return normalised_landmarks(batch)[jnp.arange(batch["landmarks"].shape[0]), batch["reference_index"]]


def reference_pose_input(batch: dict, sizes: MDNSizes) -> jax.Array | None:
    """(B, 3) = (theta, t_x, t_y) of the reference frame for a model that conditions on it, else None."""
    if not sizes.reference_pose:
        return None
    angle, offset = reference_pose(batch)
    return jnp.concatenate([angle[:, None], offset], axis=-1).astype(jnp.float32)


def target(batch: dict, regression: str, relative_pose: bool = True) -> jax.Array:
    """(B, T, D) regression target in normalised units: [aligned | angle | offset] (f_tt) or the
    scale-normalised landmarks (f_a). With `relative_pose` the angle and offset are relative to
    the reference frame's (docs/decisions.md#d8-relative-pose: the pose is anchored on the reference face)."""
    B, T = batch["aligned"].shape[:2]
    if regression == "tt":
        angle, offset = batch["angle"], batch["translation"]
        if relative_pose:
            ref_angle, ref_offset = reference_pose(batch)
            angle, offset = angle - ref_angle[:, None], offset - ref_offset[:, None]
        return mdn_nll.mdn_target(batch["aligned"], angle, offset)
    return normalised_landmarks(batch).reshape(B, T, LANDMARK_DIMS).astype(jnp.float32)


def to_normalised_landmarks(vec: jax.Array, regression: str, batch: dict | None = None) -> jax.Array:
    """(B, T, [M,] D) output vectors -> (..., 68, 2) landmarks in clip-normalised units (f_tt:
    de-aligned, with the reference frame's pose added back when `batch` is given)."""
    points = vec[..., :LANDMARK_DIMS].reshape(*vec.shape[:-1], NUM_POINTS, 2)
    if regression != "tt":
        return points
    angle, offset = vec[..., LANDMARK_DIMS], vec[..., LANDMARK_DIMS + 1 : LANDMARK_DIMS + 3]
    if batch is not None:
        ref_angle, ref_offset = reference_pose(batch)
        extra = (1,) * (angle.ndim - 1)
        angle = angle + ref_angle.reshape(-1, *extra)
        offset = offset + ref_offset.reshape(-1, *extra, 2)
    return dealign_2d(points, angle, offset)


def to_pixels(normalised: jax.Array, batch: dict) -> jax.Array:
    """(B, T, [M,] 68, 2) normalised -> pixels of the stored frames (the clip's scale and offset,
    docs/decisions.md#d8-relative-pose)."""
    extra = normalised.ndim - 4
    scale = batch["scale"].reshape(-1, *([1] * extra))
    offset = batch["offset"].reshape(-1, *([1] * extra), 2)
    if extra:
        moved = jnp.moveaxis(normalised, 1, -3)  # time next to the points for denormalise_scale
        return jnp.moveaxis(denormalise_scale(moved, scale, offset), -3, 1)
    return denormalise_scale(normalised, scale, offset)


@functools.lru_cache(maxsize=8)
def savgol_matrix(length: int, window: int, order: int) -> np.ndarray:
    """(T, T) matrix S with S @ x = Savitzky-Golay(window, order) of x along time (mode 'interp')."""
    return savgol_smooth(np.eye(length), window=window, order=order, axis=0).astype(np.float32)


def smooth_time(x: jax.Array, config: Any) -> jax.Array:
    """Savitzky-Golay along axis 1 (time) of (B, T, ...) on device, if `infer.smooth`."""
    ic = config.infer
    T = x.shape[1]
    if not bool(ic.smooth) or T < int(ic.smooth_window):
        return x
    s = jnp.asarray(savgol_matrix(T, int(ic.smooth_window), int(ic.smooth_order)))
    return jnp.einsum("st,bt...->bs...", s, x)


def sigmas(out: dict, config: Any) -> tuple[jax.Array, str, tuple]:
    """(sigma, covariance, groups) of the exact likelihood for the model's sigma layout."""
    sizes = model_sizes(config)
    sigma = mdn_nll.sigma_from_raw(out["sigma_raw"], str(config.loss.sigma_activation))
    groups = GROUPS[sizes.regression]
    if sizes.sigma == "diagonal":
        return sigma, "diagonal", groups
    if sizes.sigma == "shared":
        return sigma, "isotropic", (("all", 0, sizes.dims),)
    return sigma, "isotropic", groups


def select(out: dict, config: Any, mode: str, key: jax.Array | None = None) -> jax.Array:
    """One output vector per frame (B, T, D): the highest-weight component, the mixture mean or a
    draw (docs/decisions.md#d9-inference-modes)."""
    if mode == "max_alpha":
        return mdn_nll.best_component(out["mu"], out["logits"])
    if mode == "mean":
        return mdn_nll.mixture_mean(out["mu"], out["logits"])
    sigma, covariance, groups = sigmas(out, config)
    return mdn_nll.sample_mixture(key if key is not None else jax.random.key(0), out["mu"], out["logits"], sigma, groups, covariance)


# ----------------------------------------------------------------------------- the task


def make_optimizer(config: Any):
    oc = config.optim
    return adam_l2(
        float(config.train.learning_rate),
        weight_decay=float(oc.weight_decay),
        mask_mode=str(oc.weight_decay_mask),
        grad_clip_norm=float(oc.grad_clip_norm),
        # Only a pretrained speech branch is fine-tuned slowly (the reference's "ft" mode).
        slow=lambda names: names[:1] == ["speech"],
        slow_factor=float(config.init.speech_lr_factor) if str(config.init.sfe_checkpoint) else 1.0,
    )


def build_task(config: Any, load_pretrained: bool = True) -> SupervisedTask:
    """The MDN task. `load_pretrained=False` skips reading `init.sfe_checkpoint` (a state restored
    from this run's own checkpoint replaces those weights anyway, e.g. at inference)."""
    check_config(config)
    sizes = model_sizes(config)
    lc = config.loss
    relative = bool(config.model.relative_pose)
    dtype = compute_dtype(config.runtime.compute_dtype)
    init_from = str(config.init.sfe_checkpoint) if load_pretrained else ""
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
        if bool(lc.code_faithful):
            nll = mdn_nll.code_faithful_nll(out["mu"], out["logits"], out["sigma_raw"][..., 0], y)
        else:
            sigma, covariance, groups = sigmas(out, config)
            nll = mdn_nll.mixture_nll(out["mu"], out["logits"], sigma, y, groups, covariance=covariance)
        prior = mdn_nll.dirichlet_prior(out["logits"], float(lc.dirichlet_concentration), bool(lc.code_faithful))
        alpha_norm = mdn_nll.parameter_l2(nnx.state(model.head.logits, nnx.Param))
        sigma_norm = mdn_nll.parameter_l2(nnx.state(model.head.sigma, nnx.Param))
        loss = nll + float(lc.dirichlet_weight) * prior + float(lc.alpha_l2) * alpha_norm + float(lc.sigma_l2) * sigma_norm
        alpha = jax.nn.softmax(out["logits"], axis=-1)
        metrics = {"nll": nll, "dirichlet": prior, "alpha_max": jnp.mean(jnp.max(alpha, axis=-1))}
        if float(lc.lip_l1) > 0:
            best = mdn_nll.best_component(out["mu"], out["logits"])
            lip = mdn_nll.lip_weighted_l1(best[..., :LANDMARK_DIMS], y[..., :LANDMARK_DIMS])
            loss = loss + float(lc.lip_l1) * lip
            metrics["lip_l1"] = lip
        return loss, metrics

    return SupervisedTask(model_fn, loss_fn, make_optimizer(config), rng_streams=RNG_STREAMS)


def speech_input(batch: dict, config: Any, dtype: Any) -> jax.Array:
    """The mel windows the speech branch sees: the clip's own, or, for the speech-blind control
    (`model.speech_input=other_clip`), those of the next clip in the batch. The control sees real
    speech with the statistics of the data but no relation to the face it predicts, so it can
    learn only what the reference face and the training set tell (at best the mean mouth)."""
    audio = batch["audio"].astype(dtype)
    return jnp.roll(audio, 1, axis=0) if config.model.speech_input == "other_clip" else audio


def predict(task: SupervisedTask, state: TrainState, batch: dict, config: Any, key: jax.Array | None = None) -> dict[str, jax.Array]:
    """Inference on a batch: the raw mixture, the chosen track (normalised and pixels, both smoothed
    when `infer.smooth`) and every component's (pixels, unsmoothed). `key` draws `infer.mode=sample`."""
    regression = str(config.model.regression)
    dtype = compute_dtype(config.runtime.compute_dtype)
    sizes = model_sizes(config)
    out = task.model(state)(
        speech_input(batch, config, dtype), reference_input(batch, regression), reference_pose_input(batch, sizes), train=False
    )
    chosen = select(out, config, str(config.infer.mode), key)
    anchor = batch if bool(config.model.relative_pose) else None
    normalised = smooth_time(to_normalised_landmarks(chosen, regression, anchor), config)
    components = to_normalised_landmarks(out["mu"], regression, anchor)  # (B, T, M, 68, 2)
    return {
        **out,
        "vector": chosen,
        "normalised": normalised,
        "pixels": to_pixels(normalised, batch),
        "component_pixels": to_pixels(components, batch),
    }


# ----------------------------------------------------------------------------- evaluation


class LandmarkEval:
    """Landmark and pose errors of the MDN and of two baselines on held-out clips.

    Baselines: "static" holds the reference frame's landmarks (with its pose) still for the whole
    clip; "mean_mouth" adds the training set's mean displacement from the closed-mouth reference
    (aligned space) to the reference, i.e. an average, speech-independent mouth opening. Pose for
    RD comes from the same 2-D Procrustes fit of the 9 T-points on prediction (the smoothed output)
    and ground truth (docs/decisions.md#d10-landmark-metrics).
    `*_mixture_mean` scores the mixture mean instead of the chosen track (inference mode "mean").
    """

    reductions = {
        name: MEAN
        for name in (
            "nll", "m_lmd", "f_lmd", "lvd_mouth", "rd", "m_lmd_mixture_mean", "rd_mixture_mean", "component_spread", "alpha_max",
            "m_lmd_static", "f_lmd_static", "lvd_mouth_static", "rd_static", "m_lmd_mean_mouth", "f_lmd_mean_mouth",
        )
    }

    def __init__(self, split: str, task: SupervisedTask, config: Any, mean_offset: np.ndarray, pixel_scale: float):
        self.name = split
        self._task, self._config = task, config
        self._mean_offset = jnp.asarray(mean_offset, jnp.float32)
        self._scale = float(pixel_scale)

    def per_example(self, state: TrainState, batch: dict) -> dict[str, jax.Array]:
        config, px = self._config, self._scale
        p = predict(self._task, state, batch, config)
        sigma, covariance, groups = sigmas(p, config)
        y = target(batch, str(config.model.regression), bool(config.model.relative_pose))
        nll = jnp.mean(mdn_nll.mixture_nll_per_frame(p["mu"], p["logits"], sigma, y, groups, covariance=covariance), axis=-1)
        truth = batch["landmarks"] * px
        pred = p["pixels"] * px
        anchor = batch if bool(config.model.relative_pose) else None
        mixture_mean = mdn_nll.mixture_mean(p["mu"], p["logits"])
        mean_normalised = smooth_time(to_normalised_landmarks(mixture_mean, str(config.model.regression), anchor), config)
        mean_track = to_pixels(mean_normalised, batch)

        B, T = truth.shape[:2]
        rows = jnp.arange(B)
        ref = batch["reference_index"]
        static = jnp.broadcast_to(batch["landmarks"][rows, ref][:, None], truth.shape) * px
        ref_angle, ref_t = batch["angle"][rows, ref], batch["translation"][rows, ref]
        moved = dealign_2d(batch["reference"] + self._mean_offset, ref_angle, ref_t)  # (B, 68, 2) normalised
        mean_mouth = jnp.broadcast_to(to_pixels(moved[:, None], batch), truth.shape) * px

        pred_angle = align_2d(p["normalised"]).angle
        static_angle = jnp.broadcast_to(ref_angle[:, None], (B, T))

        comps = p["component_pixels"] * px  # (B, T, M, 68, 2)
        M = comps.shape[2]
        if M > 1:
            diff = jnp.linalg.norm(comps[:, :, :, None] - comps[:, :, None], axis=-1).mean(-1)  # (B, T, M, M)
            spread = jnp.sum(diff, axis=(-1, -2)).mean(-1) / (M * (M - 1))
        else:
            spread = jnp.zeros((B,), jnp.float32)
        alpha = jax.nn.softmax(p["logits"], axis=-1)
        return {
            "nll": nll,
            "m_lmd": lmk.m_lmd(pred, truth),
            "f_lmd": lmk.f_lmd(pred, truth),
            "lvd_mouth": lmk.landmark_velocity_error(pred, truth, points="mouth"),
            "rd": lmk.angle_distance_2d(pred_angle, batch["angle"]),
            "m_lmd_mixture_mean": lmk.m_lmd(mean_track * px, truth),
            "rd_mixture_mean": lmk.angle_distance_2d(align_2d(mean_normalised).angle, batch["angle"]),
            "component_spread": spread,
            "alpha_max": jnp.mean(jnp.max(alpha, axis=-1), axis=-1),
            "m_lmd_static": lmk.m_lmd(static, truth),
            "f_lmd_static": lmk.f_lmd(static, truth),
            "lvd_mouth_static": lmk.landmark_velocity_error(static, truth, points="mouth"),
            "rd_static": lmk.angle_distance_2d(static_angle, batch["angle"]),
            "m_lmd_mean_mouth": lmk.m_lmd(mean_mouth, truth),
            "f_lmd_mean_mouth": lmk.f_lmd(mean_mouth, truth),
        }

    def finalize(self, reduced: dict[str, Any]) -> dict[str, float]:
        out = {k: float(reduced[k]) for k in self.reductions}
        out["m_lmd_vs_static"] = out["m_lmd"] / out["m_lmd_static"]
        out["m_lmd_vs_mean_mouth"] = out["m_lmd"] / out["m_lmd_mean_mouth"]
        out["rd_vs_static"] = out["rd"] / out["rd_static"] if out["rd_static"] > 0 else float("nan")
        out["count"] = float(reduced["nll/count"])
        return out


def clip_fields(window: MDNClips) -> KeepFields:
    """An MDNClips transform keeping only what the MDN reads."""
    return KeepFields(window, FIELDS)


def frame_size(clips: Any) -> int:
    """Side of the stored (square) frames, read from the first clip's first JPEG header."""
    with Image.open(io.BytesIO(clips[0]["frames"][0])) as image:
        return int(image.size[0])


def mean_reference_offset(clips: Any, window: MDNClips, limit: int) -> np.ndarray:
    """Training-set mean of (aligned landmarks - closed-mouth reference), (68, 2): the mean-mouth baseline."""
    window = dataclasses.replace(window, train=False, audio=False)
    count = min(len(clips), limit) if limit > 0 else len(clips)
    index = np.linspace(0, len(clips) - 1, count).round().astype(int)
    deltas = [(lambda w: (w["aligned"] - w["reference"][None]).mean(0))(window(clips[int(i)], np.random.default_rng(0))) for i in index]
    return np.mean(deltas, axis=0).astype(np.float32)


def clip_window(config: Any, train: bool) -> MDNClips:
    wc = config.windows
    return MDNClips(clip_frames=int(wc.clip_frames), smooth=bool(wc.smooth), train=train)


def pixel_scale(config: Any, clips: Any) -> float:
    scale = float(config.eval.pixel_scale)
    return scale if scale > 0 else METRIC_CROP_PX / frame_size(clips)


def build_evaluators(config: Any, task: SupervisedTask, mesh: Any) -> list[ShardedEval]:
    directory = datasets.dataset_dir(config.data)
    window = clip_window(config, train=False)
    train_clips = datasets.clip_source(directory, "train")
    offset = mean_reference_offset(train_clips, window, int(config.eval.baseline_clips))
    scale = pixel_scale(config, train_clips)
    batch = int(config.eval.global_batch_size)
    evaluators: list[ShardedEval] = []
    for split in ("validation", "test"):
        if split in datasets.splits(directory):
            evaluators.append(
                ShardedEval(
                    LandmarkEval(split, task, config, offset, scale),
                    EvaluationWindows(datasets.clip_source(directory, split), clip_fields(window)),
                    batch,
                    mesh,
                    reducer=evaluators[0].reducer if evaluators else None,
                )
            )
    return evaluators


def write_plots(task: SupervisedTask, state: TrainState, config: Any, workdir: Path) -> list[str]:
    """One PNG per clip for the first `eval.plot_clips` test clips: components vs ground truth."""
    from macl_jax.evals.mdn_plots import plot_clip  # matplotlib only when plotting

    count = int(config.eval.plot_clips)
    directory = datasets.dataset_dir(config.data)
    if count <= 0 or "test" not in datasets.splits(directory):
        return []
    source = EvaluationWindows(datasets.clip_source(directory, "test"), clip_fields(clip_window(config, train=False)))
    rows = [source[i] for i in range(min(count, len(source)))]
    batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in FIELDS}
    p = jax.jit(lambda s, b: predict(task, s, b, config))(jax.tree.map(fetch, state), batch)
    # Each component's in-plane angle (plots only: the evaluators do not need it).
    angles = jax.jit(lambda c: align_2d(c).angle)(p["component_pixels"])
    out_dir = Path(workdir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(rows)):
        path = out_dir / f"test_clip{i:02d}.png"
        plot_clip(
            path,
            truth=np.asarray(batch["landmarks"][i]),
            chosen=np.asarray(p["pixels"][i]),
            components=np.asarray(p["component_pixels"][i]),
            alpha=np.asarray(jax.nn.softmax(p["logits"][i], axis=-1)),
            truth_angle=np.asarray(batch["angle"][i]),
            component_angle=np.asarray(angles[i]),
            title=f"test clip {i} ({config.model.regression}, M={config.model.components})",
        )
        paths.append(str(path))
    return paths


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
        "components": int(config.model.components),
        "regression": str(config.model.regression),
        "sfe_checkpoint": str(config.init.sfe_checkpoint),
    }
    if result.best:
        summary["best"] = result.best
    if jax.process_index() == 0:
        summary["plots"] = write_plots(task, result.state, config, Path(workdir))
        logging.info("wrote %d MDN plots to %s", len(summary["plots"]), Path(workdir) / "plots")
    return summary
