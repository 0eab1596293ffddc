"""Sections every experiment shares: runtime, checkpointing, training-loop settings."""

from __future__ import annotations

import ml_collections


def runtime_config() -> ml_collections.ConfigDict:
    """How a run is executed (not part of the config fingerprint)."""
    rt = ml_collections.ConfigDict()
    # One axis is -1 and takes the remaining devices. Batch is split over data x fsdp.
    rt.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
    # Multi-slice TPU jobs: mesh across slices over the data-centre network.
    rt.dcn_mesh = ml_collections.ConfigDict({"data": 1, "fsdp": 1, "model": 1})
    rt.compute_dtype = "auto"  # bf16 on GPU/TPU, f32 on CPU
    rt.num_cpu_devices = 0  # >0 splits the host CPU into that many devices
    rt.compilation_cache_dir = ""
    rt.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 0, "process_id": -1, "timeout_s": 300}
    )
    rt.profile = ml_collections.ConfigDict({"start_step": -1, "num_steps": 0})
    return rt


def checkpoint_config() -> ml_collections.ConfigDict:
    ck = ml_collections.ConfigDict()
    ck.every_steps = 1000
    ck.max_to_keep = 3
    ck.keep_period = 0  # also keep every K-th step; 0 = off
    ck.async_save = True
    # Also keep the best state by an evaluation metric ("eval/<evaluator>/<metric>"; "" = off)
    # under <workdir>/best, next to the regular checkpoints.
    ck.best_metric = ""
    ck.best_mode = "max"  # max | min
    return ck


def train_config() -> ml_collections.ConfigDict:
    tr = ml_collections.ConfigDict()
    tr.global_batch_size = 64
    tr.num_steps = 1000
    tr.learning_rate = 1e-3
    tr.log_every = 50
    tr.eval_every = 500
    return tr


def data_config() -> ml_collections.ConfigDict:
    da = ml_collections.ConfigDict()
    # Which clips (see data_pipelines/datasets.py): SynthTalk is built under `dir` on first use;
    # dataset="tfds" reads a prepared dataset directory (VoxCeleb2, MEAD) at `dir`.
    da.dataset = "synthtalk"
    da.variant = "voxceleb_like_tiny"
    da.dir = "data/tfds"
    da.worker_count = 0
    da.prefetch = 2
    return da


def eval_config() -> ml_collections.ConfigDict:
    ev = ml_collections.ConfigDict()
    ev.global_batch_size = 64  # padded: any test-set size works
    ev.checkpoint_dir = ""  # default: <workdir>/checkpoints
    ev.checkpoint_step = -1  # -1: the newest readable checkpoint
    return ev


def base_config(stage: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.stage = stage
    config.seed = 0
    config.runtime = runtime_config()
    config.checkpoint = checkpoint_config()
    config.train = train_config()
    config.data = data_config()
    config.eval = eval_config()
    return config


def select_preset(arg: str | None, presets: dict, default: str) -> str:
    """Validates the preset name with a message listing the choices."""
    name = arg or default
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return name


def preset_base_config(stage: str, arg: str | None, presets: dict, default: str) -> tuple[ml_collections.ConfigDict, dict]:
    """(config, preset): the shared sections of `stage` for the preset that `arg` names (or
    `default`), with `config.preset` and the preset's SynthTalk `data.variant` set."""
    name = select_preset(arg, presets, default)
    preset = presets[name]
    config = base_config(stage)
    config.preset = name
    config.data.variant = preset["variant"]
    return config, preset


def apply_schedule(config: ml_collections.ConfigDict, *, steps: int, batch: int, lr: float, log_every: int, every: int) -> None:
    """The training-length fields every preset sets: steps, global batch, LR, logging, and one
    interval for evaluation and checkpoints."""
    config.train.num_steps = steps
    config.train.global_batch_size = batch
    config.train.learning_rate = lr
    config.train.log_every = log_every
    config.train.eval_every = every
    config.checkpoint.every_steps = every


def heldout_image_eval(config: ml_collections.ConfigDict, preset: dict) -> None:
    """The image generators' held-out evaluation from a preset's `eval_batch`, `eval_max`, `fid`, `lpips`."""
    config.eval.global_batch_size = preset["eval_batch"]
    config.eval.split = "test"  # held-out speakers
    config.eval.max_examples = preset["eval_max"]  # 0: the whole split
    # FID (Inception pool features) and LPIPS-VGG16 of the held-out frames, each with the
    # copy-the-reference baseline (macl_jax.evals.image_quality).
    config.eval.fid = preset["fid"]
    config.eval.lpips = preset["lpips"]
