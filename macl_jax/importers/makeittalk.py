"""MakeItTalk's image-to-image renderer (`ResUnetGenerator`, saved as `{'G': state_dict, 'opt', 'epoch'}`).

The authors' generator is a chain of nested `ResUnetSkipConnectionBlock`s, each an `nn.Sequential`
called `model`; the next level down sits at a fixed index of that list. Our `ResUnetGenerator`
holds the same levels as attributes (`net`, `net/inner`, ...). The released weights work in BGR
in [0, 1] without a tanh inside the network, so the run gets `model.io = "makeittalk"`.
"""

from __future__ import annotations

from typing import Any

from macl_jax.importers.common import Importer, NameMap, Tensors, batch_norm_entries, conv_entries, fill_model
from macl_jax.train import renderer
from macl_jax.train.state import TrainState

# Positions in each level's nn.Sequential: (down_norm, down residual blocks, next level, up conv,
# up norm, up residual blocks); None where the level has no such layer.
_OUTERMOST = (None, (2, 3), 4, 6, None, ())
_MIDDLE = (1, (3, 4), 5, 7, 8, (10, 11))
_INNERMOST = (None, (2, 3), None, 5, 6, (8, 9))


def _residual(flax: str, torch: str) -> NameMap:
    # ResidualBlock.block: conv, BN, ReLU, conv, BN
    return (conv_entries(f"{flax}/conv1", f"{torch}.block.0", bias=False) | batch_norm_entries(f"{flax}/norm1", f"{torch}.block.1")
            | conv_entries(f"{flax}/conv2", f"{torch}.block.3", bias=False) | batch_norm_entries(f"{flax}/norm2", f"{torch}.block.4"))


def resunet_mapping(num_downs: int) -> NameMap:
    """Flax path of `ResUnetGenerator` -> (MakeItTalk state-dict name, converter)."""
    mapping: NameMap = {}
    flax, torch = "net", "model.model"
    for level in range(num_downs):
        layout = _OUTERMOST if level == 0 else _INNERMOST if level == num_downs - 1 else _MIDDLE
        down_norm, down_res, inner, up, up_norm, up_res = layout
        mapping |= conv_entries(f"{flax}/down", f"{torch}.0", bias=False)
        if down_norm is not None:
            mapping |= batch_norm_entries(f"{flax}/down_norm", f"{torch}.{down_norm}")
        for i, index in enumerate(down_res):
            mapping |= _residual(f"{flax}/down_res/{i}", f"{torch}.{index}")
        mapping |= conv_entries(f"{flax}/up", f"{torch}.{up}", bias=False)
        if up_norm is not None:
            mapping |= batch_norm_entries(f"{flax}/up_norm", f"{torch}.{up_norm}")
        for i, index in enumerate(up_res):
            mapping |= _residual(f"{flax}/up_res/{i}", f"{torch}.{index}")
        if inner is not None:
            flax, torch = f"{flax}/inner", f"{torch}.{inner}.model"
    return mapping


def fill(config: Any, task: renderer.RendererTask, state: TrainState, tensors: Tensors) -> tuple[TrainState, set[str]]:
    return fill_model(task, state, tensors, resunet_mapping(config.model.num_downs), name="g")


IMPORTER = Importer(
    name="makeittalk-renderer",
    stage="renderer",
    default_config="configs/renderer.py:full",
    required=("model.io=makeittalk",),
    container="G",
    signature="model.model.0.weight",
    build_task=renderer.build_task,
    fill=fill,
    description="MakeItTalk image-to-image renderer",
)
