"""The speech branch that the MACL authors' SFE and MDN share (their `audio_net.WavEncoder`, a
one-layer Bi-GRU, two addressing heads and memory banks): its tensor names, the Bi-GRU's two
directions stacked into our one leaf, and its sizes read off a checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np

from macl_jax.checkpoint.foreign import linear_kernel
from macl_jax.importers.common import Combined, NameMap, Tensors, batch_norm_entries, conv_entries, linear_entries

ENCODER_UNITS = 9  # one nn.Sequential of 9 units (ours: a list)


def speech_mapping(prefix: str) -> NameMap:
    """Flax paths under `prefix` (our `SpeechBranch`, memory "cs") -> authors' names, but the Bi-GRU (`gru_combined`)."""
    mapping: NameMap = {}
    for i in range(ENCODER_UNITS):  # audio_net.Conv2d: conv_block = (Conv2d with bias, BatchNorm2d)
        flax, torch = f"{prefix}/encoder/units/{i}", f"audioEncoder.encoder.{i}.conv_block"
        mapping |= conv_entries(f"{flax}/conv", f"{torch}.0") | batch_norm_entries(f"{flax}/norm", f"{torch}.1")
    for ours, theirs in (("content", "content"), ("identity", "spk")):
        # network_pred_*: nn.Sequential(Linear, ReLU, Dropout, Linear): parameters at 0 and 3.
        mapping |= linear_entries(f"{prefix}/{ours}_memory/head/hidden", f"network_pred_{theirs}.0")
        mapping |= linear_entries(f"{prefix}/{ours}_memory/head/out", f"network_pred_{theirs}.3")
        mapping[f"{prefix}/{ours}_memory/slots"] = (f"mb_{theirs}", None)
    return mapping


def _directions(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    return np.stack([forward, backward])


def _kernels(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    # torch (3H, in) with gate rows r, z, n -> ours (in, 3H) with the same gate column blocks.
    return np.stack([linear_kernel(forward), linear_kernel(backward)])


def gru_combined(prefix: str) -> Combined:
    """Our Bi-GRU leaves (both directions in one) from torch's `*_l0` and `*_l0_reverse` tensors.
    Torch keeps separate input and hidden biases; so does our GRU (`pytorch_biases`)."""
    return {f"{prefix}/{ours}": ((f"GRU.{theirs}_l0", f"GRU.{theirs}_l0_reverse"), convert)
            for ours, theirs, convert in (("w_ih", "weight_ih", _kernels), ("w_hh", "weight_hh", _kernels),
                                          ("b_ih", "bias_ih", _directions), ("b_hh", "bias_hh", _directions))}


def read_sizes(tensors: Tensors, names: dict[str, tuple[str | tuple[str, ...], int]]) -> dict[str, Any]:
    """Config sizes read off tensor shapes: {field: (tensor name or names, axis)}; fields whose
    tensors are missing are left out (`assign` reports the missing tensors)."""
    sizes: dict[str, Any] = {}
    for field, (name, axis) in names.items():
        group = (name,) if isinstance(name, str) else name
        if all(n in tensors for n in group):
            values = tuple(int(np.shape(tensors[n])[axis]) for n in group)
            sizes[field] = values[0] if isinstance(name, str) else values
    return sizes


SPEECH_SIZES = {
    "encoder_channels": (tuple(f"audioEncoder.encoder.{i}.conv_block.0.weight" for i in (0, 2, 4, 6, 8)), 0),
    "gru_hidden": ("GRU.weight_hh_l0", 1),
    "slots": ("mb_content", 0),
    "slot_dim": ("mb_content", 1),
    "head_hidden": ("network_pred_content.0.weight", 0),
}
