"""The MACL authors' speech feature extractor (`MemDPC_BD` in self_supervised/model.py), saved by
their train.py as `{'state_dict': model.state_dict(), 'optimizer', 'epoch', ...}`.

Every parameter and batch-norm statistic has a place in our `SFEPretraining` (the SFE plus the two
learnable loss scales); the layout conversions are in docs/checkpoint_import.md#macl-sfe. The sizes
come from the config, so any preset whose widths match the checkpoint imports it; a checkpoint of
other widths is refused with the overrides that would fit it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from macl_jax.checkpoint.foreign import conv_kernel, linear_kernel
from macl_jax.importers.common import CheckpointImportError, Importer, Tensors, assign_module, mapping_user
from macl_jax.train import sfe
from macl_jax.train.state import SupervisedTask, TrainState

Mapping = dict[str, tuple[str, Any]]
# flax path -> (torch names, function of those tensors): leaves that several torch tensors make up.
Combined = dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray]]]

# The authors' WavEncoder is one nn.Sequential of 9 units (ours: a list); the ResNet's layer strides.
_ENCODER_UNITS = 9
_BACKBONE_STRIDES = (1, 2, 2, 2)


def _batch_norm(flax: str, torch: str) -> Mapping:
    return {f"{flax}/scale": (f"{torch}.weight", None), f"{flax}/bias": (f"{torch}.bias", None),
            f"{flax}/mean": (f"{torch}.running_mean", None), f"{flax}/var": (f"{torch}.running_var", None)}


def _conv(flax: str, torch: str, bias: bool = True) -> Mapping:
    mapping = {f"{flax}/kernel": (f"{torch}.weight", conv_kernel)}
    if bias:
        mapping[f"{flax}/bias"] = (f"{torch}.bias", None)
    return mapping


def _linear(flax: str, torch: str) -> Mapping:
    return {f"{flax}/kernel": (f"{torch}.weight", linear_kernel), f"{flax}/bias": (f"{torch}.bias", None)}


def _audio_encoder() -> Mapping:
    mapping: Mapping = {}
    for i in range(_ENCODER_UNITS):  # audio_net.Conv2d: conv_block = (Conv2d with bias, BatchNorm2d)
        flax, torch = f"sfe/speech/encoder/units/{i}", f"audioEncoder.encoder.{i}.conv_block"
        mapping |= _conv(f"{flax}/conv", f"{torch}.0") | _batch_norm(f"{flax}/norm", f"{torch}.1")
    return mapping


def _backbone(widths: Sequence[int]) -> Mapping:
    mapping = _conv("sfe/backbone/stem", "backbone.conv1", bias=False) | _batch_norm("sfe/backbone/stem_bn", "backbone.bn1")
    ins = (widths[0], *widths[:-1])
    for layer, (c_in, c_out, stride) in enumerate(zip(ins, widths, _BACKBONE_STRIDES)):
        for block in range(2):
            flax, torch = f"sfe/backbone/layers/{layer}/{block}", f"backbone.layer{layer + 1}.{block}"
            mapping |= _conv(f"{flax}/conv1", f"{torch}.conv1", bias=False) | _batch_norm(f"{flax}/bn1", f"{torch}.bn1")
            mapping |= _conv(f"{flax}/conv2", f"{torch}.conv2", bias=False) | _batch_norm(f"{flax}/bn2", f"{torch}.bn2")
            if block == 0 and (stride != 1 or c_in != c_out):  # the residual projection: downsample = (conv, BN)
                mapping |= _conv(f"{flax}/proj", f"{torch}.downsample.0", bias=False)
                mapping |= _batch_norm(f"{flax}/proj_bn", f"{torch}.downsample.1")
    return mapping


def _visual_head(flax: str, torch: str) -> Mapping:
    # nn.Sequential(Conv3d, BatchNorm3d, ReLU, Dropout, Conv3d, AvgPool3d): parameters at 0, 1 and 4.
    return _conv(f"{flax}/conv", f"{torch}.0") | _batch_norm(f"{flax}/norm", f"{torch}.1") | _conv(f"{flax}/out", f"{torch}.4")


def _memory(flax: str, head: str, bank: str) -> Mapping:
    # network_pred_*: nn.Sequential(Linear, ReLU, Dropout, Linear): parameters at 0 and 3.
    return (_linear(f"{flax}/head/hidden", f"{head}.0") | _linear(f"{flax}/head/out", f"{head}.3")
            | {f"{flax}/slots": (bank, None)})


def sfe_mapping(model: Any) -> Mapping:
    """Flax path in `SFEPretraining` -> (authors' state-dict name, converter) for every single-tensor leaf."""
    return (
        _audio_encoder()
        | _backbone(tuple(model.video_widths))
        | _visual_head("sfe/video_content_head", "imgEncoder_content")
        | _visual_head("sfe/video_identity_head", "imgEncoder_spk")
        | _memory("sfe/speech/content_memory", "network_pred_content", "mb_content")
        | _memory("sfe/speech/identity_memory", "network_pred_spk", "mb_spk")
    )


def _directions(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    return np.stack([forward, backward])


def _kernels(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    # torch (3H, in) with gate rows r, z, n -> ours (in, 3H) with the same gate column blocks.
    return np.stack([linear_kernel(forward), linear_kernel(backward)])


def _scale(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(w).reshape(()), np.asarray(b).reshape(())])


# The Bi-GRU keeps both directions in one leaf, and each contrastive loss keeps its (w, b) in one.
COMBINED: Combined = {
    **{f"sfe/speech/gru/{ours}": ((f"GRU.{theirs}_l0", f"GRU.{theirs}_l0_reverse"), convert)
       for ours, theirs, convert in (("w_ih", "weight_ih", _kernels), ("w_hh", "weight_hh", _kernels),
                                     ("b_ih", "bias_ih", _directions), ("b_hh", "bias_hh", _directions))},
    "sync_scale": (("__L__.wC", "__L__.bC"), _scale),  # the content (sync) loss: wC, bC
    "identity_scale": (("__L__.wI", "__L__.bI"), _scale),
}


def checkpoint_sizes(tensors: Tensors) -> dict[str, Any]:
    """The config.model widths the authors' tensors were made with (those that can be read)."""
    shape = lambda name, axis: int(tensors[name].shape[axis]) if name in tensors else None  # noqa: E731
    sizes = {
        "encoder_channels": tuple(shape(f"audioEncoder.encoder.{i}.conv_block.0.weight", 0) for i in (0, 2, 4, 6, 8)),
        "gru_hidden": shape("GRU.weight_hh_l0", 1),
        "slots": shape("mb_content", 0),
        "slot_dim": shape("mb_content", 1),
        "head_hidden": shape("network_pred_content.0.weight", 0),
        "video_widths": tuple(shape(f"backbone.layer{i}.0.conv1.weight", 0) for i in (1, 2, 3, 4)),
    }
    return {k: v for k, v in sizes.items() if v is not None and (not isinstance(v, tuple) or None not in v)}


def _check_sizes(model: Any, tensors: Tensors) -> None:
    wrong = {k: v for k, v in checkpoint_sizes(tensors).items() if tuple(np.atleast_1d(model[k])) != tuple(np.atleast_1d(v))}
    if wrong:
        def flag(k: str, v: Any) -> str:
            return f"--config.model.{k}=" + ("(" + ",".join(map(str, v)) + ")" if isinstance(v, tuple) else str(v))

        raise CheckpointImportError(
            "the checkpoint's widths differ from the config's: "
            + "; ".join(f"{k} {tuple(v) if isinstance(v, tuple) else v} (config {model[k]})" for k, v in wrong.items())
            + ". The authors' released sizes are configs/sfe.py:full's; otherwise pass " + " ".join(flag(k, v) for k, v in wrong.items())
        )


def fill(config: Any, task: SupervisedTask, state: TrainState, tensors: Tensors) -> tuple[TrainState, set[str]]:
    """The train state with every parameter and running statistic of the authors' SFE; the
    optimizer state stays fresh (their Adam moments are not carried over)."""
    _check_sizes(config.model, tensors)
    mapping = sfe_mapping(config.model)
    tensors = dict(tensors)
    used = mapping_user(mapping)
    for flax, (names, combine) in COMBINED.items():
        missing = [n for n in names if n not in tensors]
        if missing:  # named as is, so that `assign` lists it with the other missing tensors
            mapping[flax] = (missing[0], None)
            continue
        key = "+".join(names)
        tensors[key] = combine(*(tensors[n] for n in names))
        mapping[flax] = (key, None)
        used |= set(names)
    params, rest = assign_module(task.graphdef, state.params, state.model_state, tensors, mapping)
    used |= {n for n in tensors if n.endswith("num_batches_tracked")}
    return state.replace(params=params, model_state=rest), used


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
