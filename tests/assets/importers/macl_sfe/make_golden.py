"""Writes a small MACL SFE checkpoint in the authors' format and torch's outputs for it, for
tests/importers/test_macl_sfe.py.

Needs torch, which the project never imports; run it in a separate environment:

    python3.11 -m venv /tmp/venv_torch && /tmp/venv_torch/bin/pip install torch==2.13.0 numpy
    /tmp/venv_torch/bin/python tests/assets/importers/macl_sfe/make_golden.py

The model below is written for this test after the authors' `MemDPC_BD` (github.com/Yaxinzhao97/MACL:
self_supervised/model.py, backbone/audio_net.py, backbone/image_net_3D.py): every module and
parameter has the authors' attribute name, so `state_dict()` has exactly their keys, but all
widths are parameters so that the checkpoint stays small. SIZES below match `configs/sfe.py:tiny` with the overrides in
tests/importers/test_macl_sfe.py (`model.head_pooling=reference`, as the reference's heads).

Writes next to this file:
  checkpoint.pth         torch.save({'state_dict', 'optimizer', 'epoch', 'best_acc', 'iteration'}),
                         as the authors' train.py saves it (state dict of the bare model)
  checkpoint_module.pth  the same weights under DataParallel's `module.` prefix
  makeittalk_like.pth    a tiny {'G': {...}, 'opt', 'epoch'} file shaped like a MakeItTalk renderer
  golden.npz             the inputs, torch's eval-mode outputs (float64 forward of the float32
                         weights) and the running statistics after one train-mode forward
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from torch_wav_encoder import WavEncoder  # noqa: E402  (the shared encoder next to this directory)

OUT = Path(__file__).resolve().parent

# Widths (the reference's in brackets); distinct numbers so that a transposed mapping cannot fit.
SIZES = {
    "encoder_channels": [3, 4, 5, 6, 7],    # [16, 32, 64, 128, 256]
    "gru_hidden": 8,                        # 512
    "slots": 12,                            # mem_size 512
    "slot_dim": 6,                          # feature_size 128
    "head_hidden": 10,                      # feature_size 128 (hidden width of network_pred_*)
    "video_widths": [3, 4, 5, 6],           # [64, 128, 256, 256]
}
BATCH, STEPS, FRAMES, PX, STORED_PX = 2, 3, 5, 200, 20  # frames are stored at 20 px and repeated x10
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
IDENTITY_STEP = 1  # the reference draws this visual step at random; fixed here


class Block(nn.Module):
    """BasicBlock2d (1x3x3, stride (1,s,s)) or BasicBlock3d (3x3x3, stride s), bias-free convs."""

    def __init__(self, cin, cout, stride, temporal):
        super().__init__()
        k, p = ((3, 3, 3), (1, 1, 1)) if temporal else ((1, 3, 3), (0, 1, 1))
        st = (stride,) * 3 if temporal else (1, stride, stride)
        self.conv1 = nn.Conv3d(cin, cout, k, st, p, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv3d(cout, cout, k, 1, p, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, st, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet2d3d(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.conv1 = nn.Conv3d(3, widths[0], (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        ins = [widths[0]] + list(widths[:-1])
        for i, (cin, cout, stride, temporal) in enumerate(zip(ins, widths, (1, 2, 2, 2), (False, False, True, True))):
            setattr(self, f"layer{i + 1}", nn.Sequential(Block(cin, cout, stride, temporal), Block(cout, cout, 1, temporal)))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class LossScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.wI, self.bI = nn.Parameter(torch.tensor(10.0)), nn.Parameter(torch.tensor(-5.0))
        self.wC, self.bC = nn.Parameter(torch.tensor(10.0)), nn.Parameter(torch.tensor(-5.0))


def visual_head(cin, feature, dropout):
    return nn.Sequential(
        nn.Conv3d(cin, feature, (1, 3, 3), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(feature), nn.ReLU(), nn.Dropout(dropout),
        nn.Conv3d(feature, feature, (1, 4, 4), 1, 0), nn.AvgPool3d((2, 1, 1), stride=1),
    )


def addressing_head(cin, hidden, slots, dropout):
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, slots))


class MemDPC_BD(nn.Module):
    """The authors' attribute names and registration order; the forward returns features only."""

    def __init__(self, s, dropout=0.5):
        super().__init__()
        self.backbone = ResNet2d3d(s["video_widths"])
        self.__L__ = LossScale()  # ends in "__": no name mangling, the key is "__L__.wI"
        self.mb_content = nn.Parameter(torch.randn(s["slots"], s["slot_dim"]))
        self.mb_spk = nn.Parameter(torch.randn(s["slots"], s["slot_dim"]))
        self.GRU = nn.GRU(s["encoder_channels"][-1], s["gru_hidden"], num_layers=1, batch_first=True, bidirectional=True)
        self.imgEncoder_content = visual_head(s["video_widths"][-1], s["slot_dim"], dropout)
        self.imgEncoder_spk = visual_head(s["video_widths"][-1], s["slot_dim"], dropout)
        self.audioEncoder = WavEncoder(s["encoder_channels"])
        self.network_pred_content = addressing_head(2 * s["gru_hidden"], s["head_hidden"], s["slots"], dropout)
        self.network_pred_spk = addressing_head(2 * s["gru_hidden"], s["head_hidden"], s["slots"], dropout)

    def forward(self, audio, img):
        B, S = audio.shape[:2]
        maps = self.backbone(img.reshape(B * S, *img.shape[2:]))
        video_content = self.imgEncoder_content(maps).reshape(B, S, -1)
        video_identity = self.imgEncoder_spk(maps).reshape(B, S, -1)
        gru_in = self.audioEncoder(audio).reshape(B, S, -1)
        h0 = torch.zeros(2, B, self.GRU.hidden_size, dtype=gru_in.dtype)
        gru, _ = self.GRU(gru_in, h0)
        content_address = F.softmax(self.network_pred_content(gru), dim=-1)
        identity_address = F.softmax(self.network_pred_spk(gru), dim=-1)
        return {
            "audio_content": torch.einsum("bnm,mc->bnc", content_address, self.mb_content),
            "audio_identity": torch.einsum("bnm,mc->bnc", identity_address, self.mb_spk),
            "video_content": video_content, "video_identity": video_identity,
            "audio_content_address": content_address, "audio_identity_address": identity_address, "gru": gru,
        }


def losses(model, out):
    """The reference's two losses and their logits: visual queries, audio candidates."""
    L = model.__L__
    v, a = out["video_content"], out["audio_content"]
    sync_logits = F.cosine_similarity(v[:, :, None], a[:, None, :], dim=-1) * L.wC + L.bC  # (B, S_v, S_a)
    target = torch.arange(v.shape[1])
    sync_loss = torch.stack([F.cross_entropy(sync_logits[b], target) for b in range(v.shape[0])]).mean()
    u, w = out["video_identity"][:, IDENTITY_STEP], out["audio_identity"].mean(1)
    id_logits = F.cosine_similarity(u[:, None], w[None, :], dim=-1) * L.wI + L.bI  # (B_v, B_a)
    id_loss = F.cross_entropy(id_logits, torch.arange(u.shape[0]))
    return {"sync_logits": sync_logits, "sync_loss": sync_loss, "identity_logits": id_logits, "identity_loss": id_loss}


def frames_to_torch(stored: np.ndarray) -> torch.Tensor:
    """uint8 (B, S, T, h, w, 3) at STORED_PX -> ImageNet-normalised float (B, S, 3, T, PX, PX)."""
    scale = PX // STORED_PX
    full = stored.repeat(scale, axis=3).repeat(scale, axis=4)
    unit = full.astype(np.float32) / np.float32(255.0)
    normed = (unit - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(normed.transpose(0, 1, 5, 2, 3, 4)))


def randomise(model, g):
    """Random weights where the reference's init leaves constants: biases, BN affine, loss scales."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "bias_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        L = model.__L__
        for p, value in ((L.wC, 7.25), (L.bC, -2.5), (L.wI, 12.5), (L.bI, -4.0)):
            p.fill_(value)


def running_stats(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()
            if k.endswith("running_mean") or k.endswith("running_var")}


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)
    model = MemDPC_BD(SIZES)
    randomise(model, g)

    # Training moves the weights and gives the running statistics something to remember.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(3):
        audio = torch.from_numpy(rng.normal(size=(BATCH, STEPS, 20, 80)).astype(np.float32))
        frames = frames_to_torch(rng.integers(0, 256, (BATCH, STEPS, FRAMES, STORED_PX, STORED_PX, 3), dtype=np.uint8))
        out = model(audio, frames)
        loss = losses(model, out)
        optimizer.zero_grad()
        (loss["sync_loss"] + loss["identity_loss"]).backward()
        optimizer.step()

    state = model.state_dict()
    torch.save({"epoch": 3, "state_dict": state, "best_acc": 0.0, "optimizer": optimizer.state_dict(), "iteration": 3},
               OUT / "checkpoint.pth")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, OUT / "checkpoint_module.pth")
    torch.save({"G": {"model.model.0.weight": torch.zeros(2, 6, 4, 4), "model.model.0.bias": torch.zeros(2)},
                "opt": {}, "epoch": 1}, OUT / "makeittalk_like.pth")

    # The golden outputs: a float64 copy of the float32 weights, so the reference carries no rounding.
    ref = MemDPC_BD(SIZES).double()
    ref.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    audio = rng.normal(size=(BATCH, STEPS, 20, 80)).astype(np.float32)
    stored = rng.integers(0, 256, (BATCH, STEPS, FRAMES, STORED_PX, STORED_PX, 3), dtype=np.uint8)
    audio_t, frames_t = torch.from_numpy(audio).double(), frames_to_torch(stored).double()
    golden = {}
    ref.eval()
    with torch.no_grad():
        out = ref(audio_t, frames_t)
        golden |= {f"eval/{k}": v.numpy() for k, v in out.items()}
        golden |= {f"eval/{k}": v.numpy() for k, v in losses(ref, out).items()}
        # One train-mode forward: the running statistics it leaves (dropout does not reach any BN
        # input, but turn it off anyway so nothing here is random).
        ref.train()
        for m in ref.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        ref(audio_t, frames_t)
    golden |= {f"train_stats/{k}": v for k, v in running_stats(ref).items()}
    golden |= {f"initial_stats/{k}": v for k, v in running_stats(model).items()}
    np.savez_compressed(
        OUT / "golden.npz",
        audio=audio,
        frames_stored=stored,
        sizes=np.array(json.dumps(SIZES)),
        identity_step=np.array(IDENTITY_STEP),
        torch_version=np.array(torch.__version__),
        **{k: np.asarray(v, np.float64) for k, v in golden.items()},
    )
    params = sum(v.numel() for v in state.values() if v.is_floating_point())
    print(f"wrote {OUT}: {len(state)} state-dict entries, {params} floats; torch {torch.__version__}")


if __name__ == "__main__":
    main()
