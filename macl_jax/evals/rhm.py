"""Held-out evaluation of the Rhythmic Head Motion generator, and the examples it is trained and scored on.

The `test` split (speakers never seen in training) through `RHMFrames(train=False)`: fixed
references, the nearest-pose warping reference and the middle of the clip's remainder as the
target. The renderer's evaluators score the generated target frames (PSNR / SSIM, and LPIPS / FID
when configured) beside copying the warping reference, unmasked (`macl_jax.evals.renderer`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from data_pipelines.datasets import clip_source, dataset_camera
from data_pipelines.windows import EvaluationWindows, KeepFields, RHMFrames
from macl_jax.evals import renderer as renderer_evals
from macl_jax.evals.renderer import dataset_path
from macl_jax.evals.sharded import ShardedEval
from macl_jax.models.rhm.generator import RHMSizes

SIZE_PRESETS = {"tiny": RHMSizes.tiny, "cpu": RHMSizes.cpu, "full": RHMSizes.full}

# What the training step and the evaluators read of an RHMFrames example.
FIELDS = (
    "ref_images", "ref_maps", "target_image", "target_map", "warp_ref", "warp_ref_image",
    "ref_landmarks_3d", "ref_rotation", "ref_translation", "target_rotation", "target_translation",
    "ref_transform", "target_transform", "target_mouth_mask", "ani_map",
)


def generator_sizes(config: Any) -> RHMSizes:
    """The RHMSizes preset of `config.model.sizes` with the config's switches and image size."""
    mc = config.model
    if mc.sizes not in SIZE_PRESETS:
        raise ValueError(f"config.model.sizes={mc.sizes!r}; choose one of {tuple(SIZE_PRESETS)}")
    return SIZE_PRESETS[mc.sizes](
        image_size=config.data.size, warp_ref=mc.warp_ref, warp_ani=mc.warp_ani,
        adaptive_spade=mc.adaptive_spade, hybrid_fusion=mc.hybrid_fusion,
    )


def frames_window(config: Any, *, train: bool) -> KeepFields:
    """RHMFrames for this config (training: random references and matcher; else fixed)."""
    dc = config.data
    window = RHMFrames(
        num_refs=generator_sizes(config).num_refs, ref_fraction=dc.ref_fraction, size=dc.size,
        worst_ref_prob=dc.worst_ref_prob, mask_mouth=dc.mask_mouth, augment=dc.augment and train, train=train,
        camera=dataset_camera(config.data),
    )
    return KeepFields(window, FIELDS)


class HeldOutFrames:
    """Deterministic RHM examples of `clips` with the renderer evaluators' names added: `target`
    and `reference` (the warping reference, unmasked: the copy-the-reference baseline)."""

    def __init__(self, clips: Any, window: KeepFields):
        self._source = EvaluationWindows(clips, window)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        example = dict(self._source[index])
        example["target"] = example["target_image"]
        example["reference"] = example["ref_images"][int(example["warp_ref"])]
        return example


def build_evaluators(config: Any, predict: Callable[[Any, dict], jax.Array], mesh: Any) -> list[ShardedEval]:
    """PSNR / SSIM (and LPIPS / FID) of `predict`'s held-out frames beside copying the warping reference."""
    source = HeldOutFrames(clip_source(dataset_path(config), config.eval.split), frames_window(config, train=False))
    return renderer_evals.evaluators_on(config, predict, source, mesh)
