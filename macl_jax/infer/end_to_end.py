"""End-to-end image quality of a trained pipeline: frames rendered from landmarks, against the truth.

The renderer stage scores frames rendered from the *ground-truth* landmarks, which says how well
it draws a face, not what a user of the whole system sees. Here the same held-out frames are
rendered four ways and scored against the ground-truth frames with the same code:

| key prefix | landmarks | renderer |
|---|---|---|
| `e2e_pred_model` | predicted by the MDN from the speech (what the paper's Table 2 measures) | the trained renderer |
| `e2e_true_model` | ground truth | the trained renderer |
| `e2e_pred_warp` / `e2e_true_warp` | the same two | the reference frame warped to the landmarks (`macl_jax.infer.warp`) |
| `e2e_copy_ref` | none | the reference frame itself |

Each gets `_psnr`, `_ssim` (Gaussian convention), means over all frames, and `_lpips` (VGG16),
the mean over every `LPIPS_FRAME_STRIDE`-th frame. The clips are `clips` held-out test clips spread evenly over the split (the split is stored speaker by
speaker, so the first clips would all be one speaker's); every frame of the MDN's window is used
except the reference frame, which the renderers are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import datasets
from macl_jax.evals.image_quality import lpips_distance
from macl_jax.infer.demo import mdn_tracks, window_frames
from macl_jax.infer.render import ModelRenderer, WarpFrames
from macl_jax.metrics.image import psnr, ssim

SOURCES = ("pred", "true")
# LPIPS runs VGG16 on both images of every pair, about 40x the cost of PSNR + SSIM on CPU: it is
# averaged over every 5th frame of each clip (neighbouring frames differ little).
LPIPS_FRAME_STRIDE = 5
RENDERERS = ("model", "warp")


def spread_indices(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over range(total) (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})


class _Scores:
    """Running per-frame sums of PSNR, SSIM and LPIPS for one way of making frames."""

    def __init__(self):
        self.sums = {"psnr": 0.0, "ssim": 0.0, "lpips": 0.0}
        self.count = self.lpips_count = 0

    def add(self, frames: np.ndarray, truth: np.ndarray, lpips_fn: Any) -> None:
        x, y = jnp.asarray(frames), jnp.asarray(truth)
        self.sums["psnr"] += float(jnp.sum(psnr(x, y, data_range=255.0)))
        self.sums["ssim"] += float(jnp.sum(ssim(x, y, data_range=255.0, convention="gaussian")))
        self.count += len(frames)
        if lpips_fn is not None:
            picked = slice(None, None, LPIPS_FRAME_STRIDE)
            self.sums["lpips"] += float(jnp.sum(lpips_fn(x[picked] / 255.0, y[picked] / 255.0)))
            self.lpips_count += len(frames[picked])

    def means(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}_psnr": self.sums["psnr"] / self.count, f"{prefix}_ssim": self.sums["ssim"] / self.count}
        if self.lpips_count:
            out[f"{prefix}_lpips"] = self.sums["lpips"] / self.lpips_count
        return out


def end_to_end_images(workdir: str | Path, data_config: Any, clips: int, *, lpips: bool = True) -> dict[str, float]:
    """Scores of the pipeline in `workdir` (its `mdn` and `renderer` runs) on `clips` test clips."""
    if clips <= 0:
        return {}
    workdir = Path(workdir)
    test = datasets.clip_source(datasets.dataset_dir(data_config), "test")
    indices = spread_indices(len(test), clips)
    rows, tracks = mdn_tracks(workdir / "mdn", indices)
    renderer = ModelRenderer(workdir / "renderer")
    lpips_fn = jax.jit(lpips_distance()) if lpips else None
    scores = {f"e2e_{s}_{r}": _Scores() for s in SOURCES for r in RENDERERS} | {"e2e_copy_ref": _Scores()}
    for index, row, predicted in zip(indices, rows, tracks):
        truth = window_frames(test[index], row, renderer)
        ref = int(row["reference_index"])
        reference = truth[ref]
        # The reference frame is the renderers' input: it is not scored (copying it would be exact).
        scored = np.arange(len(truth)) != ref
        truth = truth[scored]
        landmarks = {"pred": predicted[scored], "true": np.asarray(row["landmarks"])[scored]}
        makers = {"model": renderer.bind(reference), "warp": WarpFrames(reference, np.asarray(row["landmarks"])[ref])}
        for source in SOURCES:
            for name, make in makers.items():
                scores[f"e2e_{source}_{name}"].add(make(landmarks[source]), truth, lpips_fn)
        scores["e2e_copy_ref"].add(np.repeat(reference[None], len(truth), 0), truth, lpips_fn)
    out: dict[str, float] = {}
    for prefix, score in scores.items():
        out |= score.means(prefix)
    out["e2e_frames"] = float(scores["e2e_copy_ref"].count)
    out["e2e_clips"] = float(len(indices))
    return out
