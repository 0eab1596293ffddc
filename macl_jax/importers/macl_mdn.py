"""The MACL authors' landmark MDN (`mdn/model.py: ModelLmk`, saved as `{'state_dict': ..., 'optimizer', 'epoch'}`).

Their model is ours at the `configs/mdn.py:authors` settings: WavEncoder -> Bi-GRU -> two
addressing heads and memory banks -> a batch norm of each read-out -> MixNet (concat [speaker,
content, Linear(reference landmarks)], ReLU, Linear, dropout + Linear heads for the means, one
sigma per component and the mixing logits). Names move as follows:

    audioEncoder.encoder.<i>.conv_block.{0,1}       speech/encoder/units/<i>/{conv,norm}
    GRU.*_l0 and GRU.*_l0_reverse                   speech/gru/* (the two directions stacked)
    network_pred_content.{0,3}, mb_content          speech/content_memory/head/{hidden,out}, slots
    network_pred_spk.{0,3}, mb_spk                  speech/identity_memory/...
    final_bn_content, final_bn_spk                  content_norm, identity_norm
    lmkNet.lmk_encoder, lmkNet.mid                  reference, head/hidden
    lmkNet.{out,sigma,logits}header.1               head/{mu,sigma,logits}

MixNet's `bn` (BatchNorm1d(64)) is built but never called by the authors' forward, so nothing of
ours corresponds to it; its tensors are left out and listed in the summary's `tensors_ignored`.
The sizes come from the config (the preset's are the released ones); a checkpoint of other sizes is
refused with the overrides that fit it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from macl_jax.checkpoint.foreign import conv_kernel, linear_kernel
from macl_jax.importers.common import CheckpointImportError, Importer, Tensors, assign_module, mapping_user
from macl_jax.train import mdn
from macl_jax.train.state import SupervisedTask, TrainState

NUM_ENCODER_UNITS = 9
_GRU = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_OURS_GRU = {"weight_ih": "w_ih", "weight_hh": "w_hh", "bias_ih": "b_ih", "bias_hh": "b_hh"}


def _batch_norm(flax: str, torch: str) -> dict[str, tuple[str, Any]]:
    return {f"{flax}/scale": (f"{torch}.weight", None), f"{flax}/bias": (f"{torch}.bias", None),
            f"{flax}/mean": (f"{torch}.running_mean", None), f"{flax}/var": (f"{torch}.running_var", None)}


def _linear(flax: str, torch: str) -> dict[str, tuple[str, Any]]:
    return {f"{flax}/kernel": (f"{torch}.weight", linear_kernel), f"{flax}/bias": (f"{torch}.bias", None)}


def _both_directions(name: str) -> str:
    """The name under which `fill` stacks a GRU tensor's forward and reverse copies."""
    return f"GRU.{name}_l0+GRU.{name}_l0_reverse"


def _gru_direction(w: np.ndarray) -> np.ndarray:
    # (2, 3H, in) weights -> (2, in, 3H); (2, 3H) biases stay. Gate order r, z, n in both frameworks.
    return np.ascontiguousarray(np.swapaxes(w, 1, 2)) if w.ndim == 3 else w


def mdn_mapping() -> dict[str, tuple[str, Any]]:
    """Flax path of `LandmarkMDN` (memory "cs", feature norms, no reference pose) -> (authors' state-dict name, converter)."""
    mapping: dict[str, tuple[str, Any]] = {}
    for i in range(NUM_ENCODER_UNITS):
        flax, torch = f"speech/encoder/units/{i}", f"audioEncoder.encoder.{i}.conv_block"
        mapping[f"{flax}/conv/kernel"] = (f"{torch}.0.weight", conv_kernel)
        mapping[f"{flax}/conv/bias"] = (f"{torch}.0.bias", None)
        mapping |= _batch_norm(f"{flax}/norm", f"{torch}.1")
    for name in _GRU:
        mapping[f"speech/gru/{_OURS_GRU[name]}"] = (_both_directions(name), _gru_direction)
    for ours, theirs in (("content", "content"), ("identity", "spk")):
        mapping |= _linear(f"speech/{ours}_memory/head/hidden", f"network_pred_{theirs}.0")
        mapping |= _linear(f"speech/{ours}_memory/head/out", f"network_pred_{theirs}.3")
        mapping[f"speech/{ours}_memory/slots"] = (f"mb_{theirs}", None)
        mapping |= _batch_norm(f"{ours}_norm", f"final_bn_{theirs}")
    mapping |= _linear("reference", "lmkNet.lmk_encoder")
    mapping |= _linear("head/hidden", "lmkNet.mid")
    for ours, theirs in (("mu", "outheader"), ("sigma", "sigmaheader"), ("logits", "logitsheader")):
        mapping |= _linear(f"head/{ours}", f"lmkNet.{theirs}.1")
    return mapping


def checkpoint_sizes(tensors: Tensors) -> dict[str, Any]:
    """The config `model` fields that the authors' tensors fix, read from their shapes."""
    shape = lambda name: np.shape(tensors[name])  # noqa: E731
    sizes = {
        "encoder_channels": tuple(shape(f"audioEncoder.encoder.{i}.conv_block.0.weight")[0] for i in (0, 2, 4, 6, 8)),
        "gru_hidden": shape("GRU.weight_hh_l0")[1],
        "slots": shape("mb_content")[0],
        "slot_dim": shape("mb_content")[1],
        "head_hidden": shape("network_pred_content.0.weight")[0],
        "reference_embed": shape("lmkNet.lmk_encoder.weight")[0],
        "components": shape("lmkNet.logitsheader.1.weight")[0],
    }
    return {k: tuple(int(c) for c in v) if isinstance(v, tuple) else int(v) for k, v in sizes.items()}


def _check_sizes(config: Any, tensors: Tensors) -> None:
    try:
        sizes = checkpoint_sizes(tensors)
    except KeyError:
        return  # a missing tensor: `assign` names it, with the close matches
    model = config.model
    wrong = {k: v for k, v in sizes.items() if (tuple(model[k]) if k == "encoder_channels" else model[k]) != v}
    if wrong:
        fix = " ".join(
            f"--config.model.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in wrong.items()
        )
        raise CheckpointImportError(
            f"the checkpoint's MDN has other sizes than the config ({', '.join(f'{k}={v}' for k, v in wrong.items())}); "
            f"import it with {fix}"
        )


def fill(config: Any, task: SupervisedTask, state: TrainState, tensors: Tensors) -> tuple[TrainState, set[str]]:
    _check_sizes(config, tensors)
    mapping = mdn_mapping()
    stacked = dict(tensors)
    for name in _GRU:
        forward, reverse = f"GRU.{name}_l0", f"GRU.{name}_l0_reverse"
        if forward in tensors and reverse in tensors:
            stacked[_both_directions(name)] = np.stack([tensors[forward], tensors[reverse]])
    params, rest = assign_module(task.graphdef, state.params, state.model_state, stacked, mapping)
    used = {n for name in mapping_user(mapping) for n in name.split("+")}
    # The batch-step counters of the norms that are imported (PyTorch's momentum never reads them).
    used |= {n[: -len("running_mean")] + "num_batches_tracked" for n in used if n.endswith("running_mean")} & set(tensors)
    return state.replace(params=params, model_state=rest), used


IMPORTER = Importer(
    name="macl-mdn",
    stage="mdn",
    default_config="configs/mdn.py:authors",
    # What the weights compute besides their sizes (which `fill` checks): two memory banks with a batch
    # norm after each, f_tt outputs in absolute pose, no reference-pose input, one sigma per component
    # through ELU + 1.
    required=(
        "model.memory=cs", "model.feature_norm=true", "model.regression=tt", "model.relative_pose=false",
        "model.reference_pose=false", "model.sigma=shared", "loss.sigma_activation=elu",
    ),
    container="state_dict",
    signature="lmkNet.outheader.1.weight",
    build_task=lambda config: mdn.build_task(config, load_pretrained=False),
    fill=fill,
    description="MACL landmark MDN",
)
