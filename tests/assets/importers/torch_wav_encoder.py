"""The MACL authors' audio encoder in PyTorch, for the SFE and MDN golden scripts next to this file.

Written from the published architecture with the authors' attribute names (`encoder.<i>.conv_block`),
so that its `state_dict()` keys are theirs. Imported by `macl_sfe/make_golden.py` and
`macl_mdn/make_golden.py`, which run in a separate torch environment; nothing in the package imports it.
"""

from __future__ import annotations

from torch import nn


class ConvUnit(nn.Module):
    """audio_net.Conv2d: conv (bias) -> BN -> [+ x] -> LeakyReLU(0.2)."""

    def __init__(self, cin, cout, kernel, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.LeakyReLU(0.2)
        self.residual = residual

    def forward(self, x):
        y = self.conv_block(x)
        return self.act(y + x if self.residual else y)


class WavEncoder(nn.Module):
    """Nine units over a (1, 20, 80) mel window, widths c[0..4]: (N, c[4], 1, 1)."""

    def __init__(self, c):
        super().__init__()
        self.encoder = nn.Sequential(
            ConvUnit(1, c[0], 3, 1, 1), ConvUnit(c[0], c[0], 3, 1, 1, residual=True),
            ConvUnit(c[0], c[1], 3, (2, 4), 1), ConvUnit(c[1], c[1], 3, 1, 1, residual=True),
            ConvUnit(c[1], c[2], 3, 2, 1), ConvUnit(c[2], c[2], 3, 1, 1, residual=True),
            ConvUnit(c[2], c[3], 3, 2, 1), ConvUnit(c[3], c[3], 3, 1, 1, residual=True),
            ConvUnit(c[3], c[4], (3, 5), 1, 0),
        )

    def forward(self, audio):  # (B, S, 20, 80) -> (B*S, c[4], 1, 1)
        b, s, h, w = audio.shape
        return self.encoder(audio.reshape(b * s, 1, h, w))
