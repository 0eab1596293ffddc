"""MACL stage 2: the mixture-density landmark and head-pose regressor (MDN).

Presets:
  tiny   CI smoke: voxceleb_like_tiny, the SFE tiny speech sizes, M = 3, a few steps.
  cpu    The CPU acceptance run: SynthTalk voxceleb_like_default (64 px frames; metrics are
         reported at 256 px scale), the speech sizes of the SFE `cpu` preset, M = 3, f_tt,
         batch 16, Adam 1e-3. Initialise the speech branch from an SFE run with
         --config.init.sfe_checkpoint=<sfe workdir> (it is then fine-tuned at 0.1 x the LR).
  full   docs/decisions.md#d1-mdn-speech-branch: the SFE's reference speech sizes (Bi-GRU 512, 512-slot banks of 128),
         M = 3, batch 16, Adam 1e-4 with L2 1e-4, gradient clipping at 1, head dropout 0.8.
  authors  The MACL authors' MDN as released (docs/checkpoint_import.md#macl-mdn): their speech
         sizes (Bi-GRU 128, 256-slot banks of 128, no dropout in the addressing heads), otherwise
         as `full`, with one shared sigma per component, their likelihood, L2 on every parameter,
         and their pose path (absolute pose, no reference-pose input, Kaiming-initialised pose
         columns). `macl-jax import --from macl-mdn` writes runs of this preset (command below).

Ablations (paper Table 4): cpu_m1, cpu_m2, cpu_m5, cpu_m8 (number of components; cpu is M = 3)
and cpu_fa (direct landmark regression f_a instead of aligned landmarks + rigid pose f_tt); the
same with `full_` for the reference sizes. Any preset takes --config.model.components=M and
--config.model.regression=a|tt too.

    macl-jax import --from macl-mdn model_best_epoch123.pth.tar --workdir runs/mdn_authors

    macl-jax mdn --config configs/mdn.py:cpu --workdir runs/mdn_cpu --config.init.sfe_checkpoint=runs/sfe_cpu_cs
"""

from __future__ import annotations

import dataclasses

import ml_collections

from configs._base import apply_schedule, preset_base_config
from macl_jax.models.speech import SpeechSizes

# The SFE presets' speech sizes (tiny and cpu: SpeechSizes.tiny(); full: the reference's), so an
# SFE run of the same preset initialises the speech branch.
TINY_SPEECH = dataclasses.asdict(SpeechSizes.tiny())
FULL_SPEECH = dataclasses.asdict(SpeechSizes())
# The authors' MDN (mdn/model.py): the SFE's WavEncoder, but its own smaller GRU and banks; the
# addressing heads' hidden width is the slot width (their `feature_size`).
AUTHORS_SPEECH = FULL_SPEECH | dict(gru_hidden=128, slots=256, slot_dim=128, head_hidden=128)


_BASE = {
    "tiny": dict(
        speech=TINY_SPEECH, variant="voxceleb_like_tiny", steps=6, batch=4, lr=1e-3, every=3, log_every=1,
        eval_batch=8, head_dropout=0.1, plot_clips=1,
    ),
    "cpu": dict(
        speech=TINY_SPEECH, variant="voxceleb_like_default_64px", steps=1000, batch=16, lr=1e-3, every=250,
        log_every=50, eval_batch=48, head_dropout=0.1, plot_clips=4,
    ),
    "full": dict(
        speech=FULL_SPEECH, variant="voxceleb_like_default_256px", steps=300_000, batch=16, lr=1e-4,
        every=5000, log_every=100, eval_batch=16, head_dropout=0.8, plot_clips=8,
    ),
}
# The authors' choices wherever ours differ (README.md, MDN section: "reference code" column).
_BASE["authors"] = _BASE["full"] | dict(
    speech=AUTHORS_SPEECH, relative_pose=False, reference_pose=False, zero_pose_init=False, sigma="shared", code_faithful=True,
    weight_decay_mask="reference",
)
ABLATIONS = {f"m{m}": dict(components=m) for m in (1, 2, 5, 8)} | {"fa": dict(regression="a", reference_pose=False)}
PRESETS = dict(_BASE) | {f"{base}_{name}": {**_BASE[base], **change} for base in ("cpu", "full") for name, change in ABLATIONS.items()}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config, preset = preset_base_config("mdn", arg, PRESETS, "tiny")
    config.model = ml_collections.ConfigDict(
        {
            **preset["speech"],
            "memory": "cs",
            # "audio": the clip's mel windows; "other_clip": a speech-blind control (the speech
            # branch hears the next clip of the batch), which the learning tests' bar must beat.
            "speech_input": "audio",
            "speech_dropout": 0.0,
            "components": preset.get("components", 3),
            "reference_embed": 64,
            # The reference's heads drop 80% of their input (docs/decisions.md#mdn-architecture); the
            # short CPU runs use less.
            "head_dropout": preset["head_dropout"],
            "feature_norm": True,
            # "tt": aligned landmarks + angle + offset, de-aligned by the inverse rigid transform (the
            # paper's f_tt); "a": the landmarks directly (f_a).
            "regression": preset.get("regression", "tt"),
            # docs/decisions.md#d8-relative-pose: predict the angle and offset relative to the reference frame's, which is
            # known at inference (the input photo's pose); False: in absolute anchor space (reference code).
            "relative_pose": preset.get("relative_pose", True),
            # f_tt: the reference encoder also sees the reference frame's (theta, t_x, t_y), so the
            # predicted pose can depend on where the head starts; False: aligned landmarks only (the
            # reference code's). Ignored by f_a, which sees the pose in its reference landmarks.
            "reference_pose": preset.get("reference_pose", True),
            # f_tt: the mean head's angle and offset columns start at zero, so training starts from
            # the static head instead of a random pose tens of degrees off; False: Kaiming (reference code).
            "zero_pose_init": preset.get("zero_pose_init", True),
            # "isotropic": one sigma per component for each of landmarks / angle / offset
            # (docs/decisions.md#d3-mdn-likelihood);
            # "diagonal": one per output column; "shared": one per component (the reference code).
            "sigma": preset.get("sigma", "isotropic"),
        }
    )
    config.loss = ml_collections.ConfigDict(
        {
            # True: the reference code's likelihood (docs/decisions.md#mdn-reference-likelihood; needs
            # model.sigma = "shared").
            "code_faithful": preset.get("code_faithful", False),
            "sigma_activation": "elu",  # elu: ELU + 1 (the reference's); exp
            "dirichlet_weight": 0.005,
            "dirichlet_concentration": 2.0,
            "alpha_l2": 0.001,
            "sigma_l2": 0.01,
            # Optional lip-weighted L1 on the highest-weight component (docs/decisions.md#d4-lip-l1); the reference computes
            # its lip weight but never applies it.
            "lip_l1": 0.0,
        }
    )
    config.init = ml_collections.ConfigDict(
        {
            # An SFE workdir (its best, else newest, checkpoint) or a checkpoint step directory; "" = from scratch.
            "sfe_checkpoint": "",
            # The reference's "ft" mode: the pretrained speech branch learns at 0.1 x the LR; 0 freezes it.
            "speech_lr_factor": 0.1,
        }
    )
    config.optim = ml_collections.ConfigDict(
        {"weight_decay": 1e-4, "weight_decay_mask": preset.get("weight_decay_mask", "masked"), "grad_clip_norm": 1.0}
    )
    config.windows = ml_collections.ConfigDict({"clip_frames": 64, "smooth": True})
    config.infer = ml_collections.ConfigDict(
        # max_alpha: the highest-weight component (the paper's choice); mean: the mixture mean; sample: a draw.
        {"mode": "max_alpha", "smooth": True, "smooth_window": 7, "smooth_order": 3}
    )
    apply_schedule(
        config, steps=preset["steps"], batch=preset["batch"], lr=preset["lr"], log_every=preset["log_every"], every=preset["every"]
    )
    # The reference keeps the checkpoint with the lowest validation mouth distance.
    config.checkpoint.best_metric = "eval/validation/m_lmd"
    config.checkpoint.best_mode = "min"
    config.eval.global_batch_size = preset["eval_batch"]
    # Metrics are in pixels of a 256 px crop: the stored frame size is scaled up (0 = automatic).
    config.eval.pixel_scale = 0.0
    # Training clips used for the mean-mouth baseline (evenly spaced; 0 = all).
    config.eval.baseline_clips = 512
    config.eval.plot_clips = preset["plot_clips"]
    return config
