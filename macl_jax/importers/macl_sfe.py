"""The MACL authors' speech feature extractor (`MemDPC_BD` in self_supervised/model.py), saved by
their train.py as `{'state_dict': model.state_dict(), 'optimizer', 'epoch', ...}`.

Every parameter and batch-norm statistic has a place in our `SFEPretraining` (the SFE plus the two
learnable loss scales); the layout conversions are in docs/checkpoint_import.md#macl-sfe. The sizes
come from the config, so any preset whose widths match the checkpoint imports it; a checkpoint of
other widths is refused with the overrides that would fit it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from macl_jax.importers.common import (
    Combined, Importer, NameMap, Tensors, batch_norm_entries, check_sizes, conv_entries, fill_model,
)
from macl_jax.importers.macl_speech import SPEECH_SIZES, gru_combined, read_sizes, speech_mapping
from macl_jax.train import sfe
from macl_jax.train.state import SupervisedTask, TrainState

_BACKBONE_STRIDES = (1, 2, 2, 2)  # the ResNet's layer strides


def _backbone(widths: Sequence[int]) -> NameMap:
    mapping = conv_entries("sfe/backbone/stem", "backbone.conv1", bias=False) | batch_norm_entries("sfe/backbone/stem_bn", "backbone.bn1")
    ins = (widths[0], *widths[:-1])
    for layer, (c_in, c_out, stride) in enumerate(zip(ins, widths, _BACKBONE_STRIDES)):
        for block in range(2):
            flax, torch = f"sfe/backbone/layers/{layer}/{block}", f"backbone.layer{layer + 1}.{block}"
            mapping |= conv_entries(f"{flax}/conv1", f"{torch}.conv1", bias=False) | batch_norm_entries(f"{flax}/bn1", f"{torch}.bn1")
            mapping |= conv_entries(f"{flax}/conv2", f"{torch}.conv2", bias=False) | batch_norm_entries(f"{flax}/bn2", f"{torch}.bn2")
            if block == 0 and (stride != 1 or c_in != c_out):  # the residual projection: downsample = (conv, BN)
                mapping |= conv_entries(f"{flax}/proj", f"{torch}.downsample.0", bias=False)
                mapping |= batch_norm_entries(f"{flax}/proj_bn", f"{torch}.downsample.1")
    return mapping


def _visual_head(flax: str, torch: str) -> NameMap:
    # nn.Sequential(Conv3d, BatchNorm3d, ReLU, Dropout, Conv3d, AvgPool3d): parameters at 0, 1 and 4.
    return conv_entries(f"{flax}/conv", f"{torch}.0") | batch_norm_entries(f"{flax}/norm", f"{torch}.1") | conv_entries(f"{flax}/out", f"{torch}.4")


def sfe_mapping(model: Any) -> NameMap:
    """Flax path in `SFEPretraining` -> (authors' state-dict name, converter) for every single-tensor leaf."""
    return (
        speech_mapping("sfe/speech")
        | _backbone(tuple(model.video_widths))
        | _visual_head("sfe/video_content_head", "imgEncoder_content")
        | _visual_head("sfe/video_identity_head", "imgEncoder_spk")
    )


def _scale(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(w).reshape(()), np.asarray(b).reshape(())])


# The Bi-GRU keeps both directions in one leaf, and each contrastive loss keeps its (w, b) in one.
COMBINED: Combined = gru_combined("sfe/speech/gru") | {
    "sync_scale": (("__L__.wC", "__L__.bC"), _scale),  # the content (sync) loss: wC, bC
    "identity_scale": (("__L__.wI", "__L__.bI"), _scale),
}
SIZES = SPEECH_SIZES | {"video_widths": (tuple(f"backbone.layer{i}.0.conv1.weight" for i in (1, 2, 3, 4)), 0)}


def fill(config: Any, task: SupervisedTask, state: TrainState, tensors: Tensors) -> tuple[TrainState, set[str]]:
    """The train state with every parameter and running statistic of the authors' SFE; the
    optimizer state stays fresh (their Adam moments are not carried over)."""
    check_sizes(config.model, read_sizes(tensors, SIZES), "SFE", "configs/sfe.py:full")
    return fill_model(task, state, tensors, sfe_mapping(config.model), COMBINED)


def build_task(config: Any) -> SupervisedTask:
    # The LR drop's step does not change the state's structure; no dataset is needed to import.
    return sfe.build_task(config, epoch_steps=1)


IMPORTER = Importer(
    name="macl-sfe",
    stage="sfe",
    default_config="configs/sfe.py:full",
    # Two memory banks and the reference's visual heads (conv 1x4x4 + mean over time) are what the
    # authors' tensors parameterise; the widths are checked against the checkpoint in `fill`.
    required=("model.memory=cs", "model.head_pooling=reference"),
    container="state_dict",
    signature="imgEncoder_content.0.weight",
    build_task=build_task,
    fill=fill,
    description="MACL speech feature extractor (SFE)",
)
