"""Writes a small MACL MDN checkpoint and its PyTorch outputs, for tests/importers/test_macl_mdn.py.

Installs nothing itself. Run it in a separate environment that has torch:

    python3.11 -m venv /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch==2.13.0 numpy
    /tmp/venv_torch/bin/python tests/assets/importers/macl_mdn/make_golden.py

The model below is written from the authors' published MDN architecture (docs/checkpoint_import.md#macl-mdn):
the same modules under the same attribute names,
so its `state_dict()` keys are those of a checkpoint saved by the authors' `mdn/train.py`. Their
widths are constants there; here they are arguments, and the file is built at the small sizes of
`SIZES` (the same as the test's config overrides) so the asset stays small. Weights are random (biases,
batch-norm affines and the unused MixNet `bn` too, so that a mapping which skips or swaps one
shows), the running statistics come from a few training-mode batches, and the file is saved as the
authors' script saves it: `{'epoch', 'backbone', 'state_dict', 'best_acc', 'optimizer', 'iteration'}`.

Writes:
  checkpoint.pth              the checkpoint (state dict without a prefix, as the authors save it)
  checkpoint_dataparallel.pth the same weights under DataParallel's `module.` prefix
  sfe_like.pth                a few tensors named as in the authors' SFE (no MixNet): a wrong model
  golden.npz
    audio, lmk                eval inputs: (B, T, 20, 80) mel windows, (B, 136) aligned reference landmarks
    mu, sigma_raw, logits     the eval-mode forward: (B, T, 139 M), (B, T, M), (B, T, M)
    sigma, alpha              clamp(ELU(s) + 1, 1e-4, 1e5) and clamp(softmax(logits), 1e-4, 1 - 1e-4)
    train_audio, train_lmk    a batch for one training-mode forward with every dropout at 0
    train_mu, train_sigma_raw, train_logits   that forward's outputs
    <bn>.mean / <bn>.var      every used batch norm's running statistics after that forward
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torch_wav_encoder import WavEncoder  # noqa: E402  (the shared encoder next to this directory)

OUT = Path(__file__).resolve().parent
# Small stand-ins for the authors' sizes (WavEncoder 16-32-64-128-256, GRU 128, banks 256 x 128,
# addressing hidden = slot width, landmark embedding 64, M = 3).
SIZES = dict(encoder_channels=(4, 4, 8, 8, 16), gru_hidden=8, slots=16, slot_dim=8, reference_embed=8, components=2)
LMK, POSE = 136, 3


class MixNet(nn.Module):
    def __init__(self, feature: int, embed: int, components: int, dropout: float) -> None:
        super().__init__()
        width = 2 * feature + embed
        self.outheader = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, (LMK + POSE) * components))
        self.sigmaheader = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, components))
        self.logitsheader = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, components))
        self.lmk_encoder = nn.Linear(LMK, embed)
        self.act = nn.ReLU()
        self.bn = nn.BatchNorm1d(embed)  # built by the authors, never called
        self.mid = nn.Linear(width, width)

    def forward(self, first, second, lmk):
        # The authors' caller passes the speaker read-out first, then the content one.
        x = self.mid(self.act(torch.cat((first, second, self.lmk_encoder(lmk)), dim=-1)))
        return self.outheader(x), self.sigmaheader(x), self.logitsheader(x)


class ModelLmk(nn.Module):
    def __init__(self, encoder_channels, gru_hidden, slots, slot_dim, reference_embed, components, dropout=0.8) -> None:
        super().__init__()
        self.hidden = gru_hidden
        self.mb_content = nn.Parameter(torch.randn(slots, slot_dim))
        self.mb_spk = nn.Parameter(torch.randn(slots, slot_dim))
        self.GRU = nn.GRU(encoder_channels[-1], gru_hidden, num_layers=1, batch_first=True, bidirectional=True)
        # The authors' addressing hidden width is their `feature_size`, the slot width; dropout 0.0.
        self.network_pred_content = nn.Sequential(
            nn.Linear(2 * gru_hidden, slot_dim), nn.ReLU(inplace=True), nn.Dropout(0.0), nn.Linear(slot_dim, slots))
        self.network_pred_spk = nn.Sequential(
            nn.Linear(2 * gru_hidden, slot_dim), nn.ReLU(inplace=True), nn.Dropout(0.0), nn.Linear(slot_dim, slots))
        self.audioEncoder = WavEncoder(encoder_channels)
        self.final_bn_content = nn.BatchNorm1d(slot_dim)
        self.final_bn_spk = nn.BatchNorm1d(slot_dim)
        self.lmkNet = MixNet(slot_dim, reference_embed, components, dropout)

    def forward(self, audio, lmk):
        """audio (B, T, 20, 80), lmk (B, T, 136) -> (outH, sigma, logits)."""
        b, t = audio.shape[:2]
        feats = self.audioEncoder(audio).reshape(b, t, -1)
        out, _ = self.GRU(feats, torch.zeros(2, b, self.hidden))
        content = torch.einsum("bnm,mc->bnc", F.softmax(self.network_pred_content(out), dim=-1), self.mb_content)
        spk = torch.einsum("bnm,mc->bnc", F.softmax(self.network_pred_spk(out), dim=-1), self.mb_spk)
        content = self.final_bn_content(content.transpose(1, 2)).transpose(1, 2)
        spk = self.final_bn_spk(spk.transpose(1, 2)).transpose(1, 2)
        return self.lmkNet(spk, content, lmk)


def randomise(model: nn.Module, gen: torch.Generator) -> None:
    """Non-zero, non-default values everywhere a wrong mapping could hide (biases, BN affines)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name.rsplit(".", 1)[-1] or ".bn." in name or "final_bn" in name or "conv_block.1" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen) + (1.0 if name.endswith("weight") else 0.0))
        # Sharper addressing than the default init gives, so the softmax over slots is not flat.
        for seq in (model.network_pred_content, model.network_pred_spk):
            seq[3].weight.mul_(4.0)


def inputs(rng: np.random.Generator, b: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    audio = rng.normal(size=(b, t, 20, 80)).astype(np.float32)
    lmk = rng.uniform(-1.0, 1.0, size=(b, LMK)).astype(np.float32)
    return audio, lmk


def forward(model: ModelLmk, audio: np.ndarray, lmk: np.ndarray):
    t = audio.shape[1]
    ref = torch.from_numpy(lmk)[:, None].repeat(1, t, 1)  # the authors repeat the reference over time
    return model(torch.from_numpy(audio), ref)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)
    model = ModelLmk(**SIZES)
    randomise(model, gen)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics away from (0, 1)
            audio, lmk = inputs(rng, 3, 4)
            forward(model, 2.0 * audio + 0.5, lmk)
        model.lmkNet.bn(torch.randn(5, SIZES["reference_embed"], generator=gen))  # its stats too (still unused)

    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    saved = {"epoch": 3, "backbone": "resnet18", "state_dict": state, "best_acc": 1.5,
             "optimizer": optimizer.state_dict(), "iteration": 30}
    torch.save(saved, OUT / "checkpoint.pth")
    torch.save({**saved, "state_dict": {f"module.{k}": v for k, v in state.items()}}, OUT / "checkpoint_dataparallel.pth")

    golden: dict[str, np.ndarray] = {}
    model.eval()
    audio, lmk = inputs(rng, 2, 5)
    with torch.no_grad():
        mu, sigma_raw, logits = forward(model, audio, lmk)
    golden |= dict(audio=audio, lmk=lmk, mu=mu.numpy(), sigma_raw=sigma_raw.numpy(), logits=logits.numpy(),
                   sigma=torch.clamp(F.elu(sigma_raw) + 1, 1e-4, 1e5).numpy(),
                   alpha=torch.clamp(F.softmax(logits, -1), 1e-4, 1 - 1e-4).numpy())

    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    train_audio, train_lmk = inputs(rng, 3, 4)
    with torch.no_grad():
        mu, sigma_raw, logits = forward(model, train_audio, train_lmk)
    golden |= dict(train_audio=train_audio, train_lmk=train_lmk, train_mu=mu.numpy(),
                   train_sigma_raw=sigma_raw.numpy(), train_logits=logits.numpy())
    for name, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and name != "lmkNet.bn":
            golden[f"{name}.mean"] = m.running_mean.numpy().copy()
            golden[f"{name}.var"] = m.running_var.numpy().copy()
    np.savez_compressed(OUT / "golden.npz", **golden)

    # A wrong model: tensors as the authors' SFE names them (speech branch, visual heads, loss scale).
    sfe_like = {k: v for k, v in state.items() if k.startswith(("audioEncoder.encoder.0.", "GRU.", "mb_"))}
    sfe_like |= {"imgEncoder_content.0.weight": torch.randn(4, 8, 1, 1, 1, generator=gen), "__L__.wI": torch.tensor(10.0)}
    torch.save({"epoch": 1, "state_dict": sfe_like}, OUT / "sfe_like.pth")
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {OUT}: {len(state)} tensors, {n} parameters, torch {torch.__version__}")


if __name__ == "__main__":
    main()
