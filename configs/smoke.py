"""The smallest end-to-end job: a procedural regression through the whole runtime.

It exercises what every stage uses (mesh, global batches from a sharded Grain pipeline, the
jitted donated step, evaluation, Orbax resumption, logging) in seconds on a laptop, and is the
job the runtime tests launch through the entry point. Presets: `tiny` (CI), `default`.
"""

from __future__ import annotations

import ml_collections

from configs._base import apply_schedule, base_config, select_preset

PRESETS = {
    "tiny": dict(hidden=32, depth=2, num_train=1024, num_steps=60, batch=32, every=20, log_every=1),
    "default": dict(hidden=256, depth=3, num_train=16384, num_steps=2000, batch=128, every=500, log_every=50),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = PRESETS[select_preset(arg, PRESETS, "tiny")]
    config = base_config("smoke")
    config.model = ml_collections.ConfigDict(
        {"hidden": preset["hidden"], "depth": preset["depth"], "use_batchnorm": True, "dropout": 0.1}
    )
    config.dataset = ml_collections.ConfigDict(
        {"num_train": preset["num_train"], "num_test": 512, "input_dim": 16, "output_dim": 4, "noise": 0.05, "seed": 1}
    )
    apply_schedule(
        config, steps=preset["num_steps"], batch=preset["batch"], lr=3e-3, log_every=preset["log_every"], every=preset["every"]
    )
    config.eval.global_batch_size = 64
    return config
