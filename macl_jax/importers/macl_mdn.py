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

from macl_jax.importers.common import Importer, NameMap, Tensors, batch_norm_entries, check_sizes, fill_model, linear_entries
from macl_jax.importers.macl_speech import SPEECH_SIZES, gru_combined, read_sizes, speech_mapping
from macl_jax.train import mdn
from macl_jax.train.state import SupervisedTask, TrainState

def mdn_mapping() -> NameMap:
    """Flax path of `LandmarkMDN` (memory "cs", feature norms, no reference pose) -> (authors' state-dict
    name, converter), for every leaf but the Bi-GRU's (`COMBINED`)."""
    mapping = speech_mapping("speech")
    for ours, theirs in (("content", "content"), ("identity", "spk")):
        mapping |= batch_norm_entries(f"{ours}_norm", f"final_bn_{theirs}")
    mapping |= linear_entries("reference", "lmkNet.lmk_encoder")
    mapping |= linear_entries("head/hidden", "lmkNet.mid")
    for ours, theirs in (("mu", "outheader"), ("sigma", "sigmaheader"), ("logits", "logitsheader")):
        mapping |= linear_entries(f"head/{ours}", f"lmkNet.{theirs}.1")
    return mapping


COMBINED = gru_combined("speech/gru")
SIZES = SPEECH_SIZES | {"reference_embed": ("lmkNet.lmk_encoder.weight", 0), "components": ("lmkNet.logitsheader.1.weight", 0)}


def fill(config: Any, task: SupervisedTask, state: TrainState, tensors: Tensors) -> tuple[TrainState, set[str]]:
    check_sizes(config.model, read_sizes(tensors, SIZES), "MDN", "configs/mdn.py:authors")
    return fill_model(task, state, tensors, mdn_mapping(), COMBINED)


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
