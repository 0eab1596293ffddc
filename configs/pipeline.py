"""The main job: SynthTalk -> SFE -> MDN -> renderer -> evaluation, report and demo videos.

Presets:
  default  CPU-sized, about 22 minutes on 2 cores: SynthTalk voxceleb_like_default (128 px; the SFE
           reads its frames at 64 px), short runs of the `cpu` presets of the three stages.
  quick    A few minutes (`macl-jax pipeline --quick`): voxceleb_like_tiny, the `tiny` SFE and MDN, and
           the `tiny` renderer at ngf 16.

    macl-jax pipeline --workdir runs/pipeline [--quick]

Each stage runs in `<workdir>/<stage>` from `stages.<stage>.config` with `stages.<stage>.overrides`
(`key=value` strings, as on the command line); data, seed and runtime come from this config, and
the MDN's speech branch starts from the SFE run. Rerunning the command resumes: a finished stage
is kept, an interrupted one continues from its last checkpoint.
"""

from __future__ import annotations

import ml_collections

from configs._base import preset_base_config

PRESETS = {
    "default": dict(
        variant="voxceleb_like_default",
        sfe=("configs/sfe.py:cpu", ("train.num_steps=300", "train.eval_every=300", "train.log_every=25",
                                    "windows.frame_size=64", "checkpoint.every_steps=100")),
        mdn=("configs/mdn.py:cpu", ("train.num_steps=400", "train.eval_every=200", "train.log_every=25",
                                    "checkpoint.every_steps=100", "eval.plot_clips=4")),
        renderer=("configs/renderer.py:cpu", ("train.num_steps=900", "train.eval_every=900", "train.log_every=25",
                                              "checkpoint.every_steps=300", "eval.max_examples=96")),
        demo_clips=3,
        e2e_clips=24,
    ),
    "quick": dict(
        variant="voxceleb_like_tiny",
        sfe=("configs/sfe.py:tiny", ("train.num_steps=60", "train.eval_every=60", "train.log_every=10")),
        mdn=("configs/mdn.py:tiny", ("train.num_steps=200", "train.global_batch_size=8", "train.eval_every=100",
                                     "train.log_every=20", "checkpoint.every_steps=100", "eval.plot_clips=2")),
        # ngf 16, batch 8, Adam 2e-3 decayed over the second half: the cheapest tiny renderer measured
        # to beat copying the reference frame on held-out speakers (docs/testing.md).
        renderer=("configs/renderer.py:tiny", ("train.num_steps=1000", "train.eval_every=1000", "train.log_every=50",
                                               "checkpoint.every_steps=500", "model.ngf=16", "train.learning_rate=2e-3",
                                               "optimizer.decay_start=0.5")),
        demo_clips=2,
        e2e_clips=4,
    ),
}
STAGE_ORDER = ("sfe", "mdn", "renderer")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config, preset = preset_base_config("pipeline", arg, PRESETS, "default")
    config.stages = ml_collections.ConfigDict(
        {stage: {"config": preset[stage][0], "overrides": preset[stage][1]} for stage in STAGE_ORDER}
    )
    config.report = ml_collections.ConfigDict(
        {
            # Held-out clips shown as videos: reference | generated | ground truth | landmarks, with audio.
            "demo_clips": preset["demo_clips"],
            # Held-out clips (spread over the test speakers) scored end to end: every frame of the
            # MDN's window rendered from predicted and from true landmarks.
            "e2e_clips": preset["e2e_clips"],
            # Upscale of the demo panels (SynthTalk frames are 64-128 px).
            "demo_panel_px": 192,
        }
    )
    return config
