"""A figure per evaluated clip of the landmark MDN: every mixture component against the truth.

Panels: mouth opening (inner-lip gap, points 62-66) and chin height over time for the truth, the
chosen track and each component; the in-plane head angle of the truth and each component; the
mixing weights over time; and the landmarks of the middle frame (truth vs component means).
`write_plots` draws one for each of the first test clips of a trained MDN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import datasets
from data_pipelines.windows import EvaluationWindows
from macl_jax.evals.mdn import Predict, clip_fields, clip_window
from macl_jax.geometry import align_2d
from macl_jax.media.atomic import atomic_output
from macl_jax.models.mdn_targets import FIELDS


def _gap(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap |p66 - p62| (..., 68, 2) -> (...)."""
    return np.linalg.norm(points[..., 66, :] - points[..., 62, :], axis=-1)


def plot_clip(
    path: str | Path,
    *,
    truth: np.ndarray,
    chosen: np.ndarray,
    components: np.ndarray,
    alpha: np.ndarray,
    truth_angle: np.ndarray,
    component_angle: np.ndarray,
    title: str = "",
) -> Path:
    """truth/chosen (T, 68, 2) px, components (T, M, 68, 2) px, alpha (T, M), angles (T,) / (T, M) radians."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, M = alpha.shape
    t = np.arange(T)
    colours = plt.get_cmap("tab10")(np.arange(M) % 10)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    ax.plot(t, _gap(truth), "k-", lw=2, label="truth")
    ax.plot(t, _gap(chosen), "k--", lw=1.2, label="chosen (smoothed)")
    for m in range(M):
        ax.plot(t, _gap(components[:, m]), color=colours[m], lw=1, label=f"component {m}")
    ax.set(title="mouth opening |p66 - p62| (px)", xlabel="frame")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot(t, np.degrees(truth_angle), "k-", lw=2, label="truth")
    for m in range(M):
        ax.plot(t, np.degrees(component_angle[:, m]), color=colours[m], lw=1, label=f"component {m}")
    ax.set(title="in-plane head angle (deg)", xlabel="frame")
    ax = axes[1, 0]
    for m in range(M):
        ax.plot(t, alpha[:, m], color=colours[m], lw=1.2, label=f"alpha {m}")
    ax.set(title="mixing weights", xlabel="frame", ylim=(0, 1))
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    mid = T // 2
    ax.scatter(truth[mid, :, 0], truth[mid, :, 1], c="k", s=10, label="truth")
    for m in range(M):
        ax.scatter(components[mid, m, :, 0], components[mid, m, :, 1], color=colours[m], s=6, marker="x", label=f"component {m}")
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set(title=f"landmarks at frame {mid} (px)")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path


def write_plots(predict: Predict, state: Any, config: Any, workdir: Path) -> list[str]:
    """One PNG per clip for the first `eval.plot_clips` test clips: components vs ground truth.
    `state` is on the host (one device's copy), `predict` the trainer's (state, batch) -> outputs."""
    count = config.eval.plot_clips
    directory = datasets.dataset_dir(config.data)
    if count <= 0 or "test" not in datasets.splits(directory):
        return []
    source = EvaluationWindows(datasets.clip_source(directory, "test"), clip_fields(clip_window(config, train=False)))
    rows = [source[i] for i in range(min(count, len(source)))]
    batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in FIELDS}
    p = jax.jit(predict)(state, batch)
    # Each component's in-plane angle (plots only: the evaluators do not need it).
    angles = jax.jit(lambda c: align_2d(c).angle)(p["component_pixels"])
    out_dir = Path(workdir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(rows)):
        path = out_dir / f"test_clip{i:02d}.png"
        plot_clip(
            path,
            truth=np.asarray(batch["landmarks"][i]),
            chosen=np.asarray(p["pixels"][i]),
            components=np.asarray(p["component_pixels"][i]),
            alpha=np.asarray(jax.nn.softmax(p["logits"][i], axis=-1)),
            truth_angle=np.asarray(batch["angle"][i]),
            component_angle=np.asarray(angles[i]),
            title=f"test clip {i} ({config.model.regression}, M={config.model.components})",
        )
        paths.append(str(path))
    return paths
