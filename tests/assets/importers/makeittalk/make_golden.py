"""Writes a small MakeItTalk renderer checkpoint and its PyTorch outputs, for tests/importers/test_makeittalk.py.

Installs nothing itself. Run it in a separate environment that has torch:

    python3.11 -m venv /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch==2.13.0 numpy
    /tmp/venv_torch/bin/python tests/assets/importers/makeittalk/make_golden.py

The generator below is written from the published architecture (docs/checkpoint_import.md): the
same layers in the same `nn.Sequential` positions, so that its `state_dict()` names are the
released checkpoints' names. It is built at ngf = 2 (the released one has ngf = 64) so the asset
stays small, given random weights and running statistics from a few training-mode batches, and
saved as the authors' training script saves it: `{'G': state_dict, 'opt': ..., 'epoch': ...}`.
A second file holds the same weights under DataParallel's `module.` prefix.

Writes `checkpoint.pth`, `checkpoint_dataparallel.pth` and `golden.npz`:
  y            the network's raw output (no tanh) in eval mode for `inputs()[0]`, BGR in [0, 1]
  <bn>.mean / <bn>.var   every BatchNorm's running statistics after one training-mode forward of
               `inputs()[1]` (the inputs come from numpy seeds, so the test rebuilds them)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent
NUM_DOWNS, NGF, SIZE = 6, 2, 64


class ResidualBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(True)
        self.block = nn.Sequential(
            nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return self.relu(x + self.block(x))


class Level(nn.Module):
    """One U-Net level; `sub` is the next level down (None at the innermost)."""

    def __init__(self, outer: int, inner: int, input_nc: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        input_nc = input_nc or outer
        down = nn.Conv2d(input_nc, inner, 3, 2, 1, bias=False)
        res_down = [ResidualBlock(inner), ResidualBlock(inner)]
        res_up = [ResidualBlock(outer), ResidualBlock(outer)]
        upsample = nn.Upsample(scale_factor=2, mode="nearest")
        if outermost:
            layers = [down, nn.ReLU(True), *res_down, sub, upsample, nn.Conv2d(2 * inner, outer, 3, 1, 1, bias=False)]
        elif sub is None:
            layers = [down, nn.ReLU(True), *res_down, upsample, nn.Conv2d(inner, outer, 3, 1, 1, bias=False),
                      nn.BatchNorm2d(outer), nn.ReLU(True), *res_up]
        else:
            layers = [down, nn.BatchNorm2d(inner), nn.ReLU(True), *res_down, sub, upsample,
                      nn.Conv2d(2 * inner, outer, 3, 1, 1, bias=False), nn.BatchNorm2d(outer), nn.ReLU(True), *res_up]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class ResUnetGenerator(nn.Module):
    def __init__(self, input_nc: int = 6, output_nc: int = 3, num_downs: int = NUM_DOWNS, ngf: int = NGF) -> None:
        super().__init__()
        level = Level(ngf * 8, ngf * 8)
        for _ in range(num_downs - 5):
            level = Level(ngf * 8, ngf * 8, sub=level)
        level = Level(ngf * 4, ngf * 8, sub=level)
        level = Level(ngf * 2, ngf * 4, sub=level)
        level = Level(ngf, ngf * 2, sub=level)
        self.model = Level(output_nc, ngf, input_nc=input_nc, sub=level, outermost=True)

    def forward(self, x):
        return self.model(x)


def inputs() -> tuple[np.ndarray, np.ndarray]:
    """(eval input (1, 6, 64, 64), training batch (4, 6, 128, 128)), NCHW, in [0, 1]."""
    return (np.random.default_rng(0).uniform(size=(1, 6, SIZE, SIZE)).astype(np.float32),
            np.random.default_rng(1).uniform(size=(4, 6, 2 * SIZE, 2 * SIZE)).astype(np.float32))


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = ResUnetGenerator()
    with torch.no_grad():  # weights away from the default init, and BN statistics that are not (0, 1)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    net.train()
    for i in range(3):
        net(torch.rand(2, 6, SIZE, SIZE, generator=torch.Generator().manual_seed(100 + i)))
    checkpoint = {"G": net.state_dict(), "opt": {"lr": 1e-4}, "epoch": 7}
    torch.save(checkpoint, OUT / "checkpoint.pth")
    torch.save({**checkpoint, "G": {f"module.{k}": v for k, v in net.state_dict().items()}}, OUT / "checkpoint_dataparallel.pth")

    x, train_x = inputs()
    net.eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(train_x))
    stats = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            stats[f"{name}.mean"] = module.running_mean.numpy().copy()
            stats[f"{name}.var"] = module.running_var.numpy().copy()
    np.savez_compressed(OUT / "golden.npz", y=y, **stats)
    print(f"{sum(p.numel() for p in net.parameters())} parameters, {len(stats) // 2} batch norms -> {OUT}")


if __name__ == "__main__":
    main()
