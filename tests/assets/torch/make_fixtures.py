"""Builds the torch golden fixtures read by tests/checkpoint/test_foreign.py.

Needs torch, which the project never imports; use a throw-away venv (the exact pin installs a
local CPU wheel on the dev machines)::

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tests/assets/torch/make_fixtures.py

Writes next to this file:
  state_dict.pt  ``torch.save({"model": state_dict, "meta": {...}})`` (zip format)
  scripted.pt    ``torch.jit.save(torch.jit.script(model))``
  module.pt      ``torch.save(model)``: a whole pickled nn.Module (Parameters, _modules, ...)
  legacy.pt      a pre-1.6 (non-zip) torch.save pickle, which the reader must refuse clearly
  expected.npz   every state_dict tensor under its state_dict name (bfloat16 as its uint16 bits,
                 key suffix ``:bits``), plus ``io.<layer>.x`` / ``io.<layer>.y``: a fixed input
                 and torch's output for conv2d, conv3d, linear and conv_t.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1)
        self.conv3d = nn.Conv3d(2, 3, kernel_size=(2, 3, 3), padding=(0, 1, 1), bias=False)
        self.linear = nn.Linear(5, 6)
        self.bn = nn.BatchNorm2d(4)
        self.conv_t = nn.ConvTranspose2d(4, 3, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.blocks = nn.Sequential(nn.Linear(6, 2), nn.ReLU(), nn.Linear(2, 2))
        base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
        self.register_buffer("base", base)
        # A non-contiguous view with a storage offset, sharing base's storage.
        self.register_buffer("view", base[1:3, 2:5].t())
        self.register_buffer("fp16", torch.randn(2, 3).half())
        self.register_buffer("bf16", torch.randn(3).bfloat16())
        self.register_buffer("mask", torch.tensor([True, False, True]))
        # uint16 is one of the dtypes torch pickles through _rebuild_tensor_v3 (untyped storage).
        self.register_buffer("u16", torch.tensor([1, 2, 65535], dtype=torch.uint16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_t(torch.relu(self.bn(self.conv2d(x))))


def main() -> None:
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # non-trivial running statistics and counter
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.num_batches_tracked.fill_(7)
    model.eval()
    assert model.view.storage_offset() == 8 and not model.view.is_contiguous()

    sd = model.state_dict()
    torch.save({"model": sd, "meta": {"epoch": 3, "note": "fixture"}}, OUT / "state_dict.pt")
    torch.jit.save(torch.jit.script(model), OUT / "scripted.pt")
    torch.save(model, OUT / "module.pt")
    torch.save({"w": torch.zeros(2)}, OUT / "legacy.pt", _use_new_zipfile_serialization=False)

    arrays = {}
    for name, t in sd.items():
        if t.dtype == torch.bfloat16:
            arrays[name + ":bits"] = t.view(torch.int16).numpy().view(np.uint16)
        else:
            arrays[name] = t.numpy()
    inputs = {
        "conv2d": torch.randn(2, 3, 7, 6),
        "conv3d": torch.randn(1, 2, 4, 5, 5),
        "linear": torch.randn(3, 5),
        "conv_t": torch.randn(2, 4, 3, 4),
    }
    with torch.no_grad():
        for name, x in inputs.items():
            arrays[f"io.{name}.x"] = x.numpy()
            arrays[f"io.{name}.y"] = getattr(model, name)(x).numpy()
    np.savez_compressed(OUT / "expected.npz", **arrays)


if __name__ == "__main__":
    main()
