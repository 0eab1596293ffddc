"""Demo videos of a trained pipeline on held-out clips, with the clips' audio.

Each video shows four panels side by side: the reference frame the renderer is given (the clip's
closed-mouth frame), the generated frame (MDN landmarks from the speech -> renderer), the ground
truth frame, and the landmarks (predicted in red over the true ones in green).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from data_pipelines import datasets
from data_pipelines.windows import EvaluationWindows, decode_frames
from macl_jax.evals.mdn import clip_window
from macl_jax.infer.inputs import SAMPLES_PER_FRAME
from macl_jax.infer.motion import LandmarkPredictor
from macl_jax.infer.render import ModelRenderer
from macl_jax.media.draw import default_font, overlay_landmarks
from macl_jax.media.video_io import write_video
from macl_jax.models.mdn_targets import FIELDS
from macl_jax.train.mdn import predict

PANELS = ("reference", "generated", "ground truth", "landmarks: predicted / true")
_LABEL_PX = 14


def _panel(frames: np.ndarray, px: int) -> np.ndarray:
    """Resizes (T, S, S, 3) frames to px x px (bilinear)."""
    return np.stack([np.asarray(Image.fromarray(f).resize((px, px), Image.BILINEAR)) for f in frames])


def _label_strip(width: int, px: int) -> np.ndarray:
    strip = Image.new("RGB", (width, _LABEL_PX), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for i, text in enumerate(PANELS):
        draw.text((i * px + 3, 1), text, fill=(255, 255, 255), font=default_font())
    return np.asarray(strip)


def mdn_tracks(mdn_dir: Path, indices: Sequence[int]) -> tuple[list[dict], np.ndarray]:
    """(windows of the test clips at `indices`, predicted pixel landmarks (clips, T, 68, 2)) of an MDN run's selected state."""
    predictor = LandmarkPredictor(mdn_dir)
    config = predictor.config
    source = EvaluationWindows(datasets.clip_source(datasets.dataset_dir(config.data), "test"), clip_window(config, train=False))
    rows = [source[i] for i in indices]
    batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in FIELDS}
    pixels = jax.jit(lambda s, b: predict(predictor.task, s, b, config)["pixels"])(predictor.state, batch)
    return rows, np.asarray(pixels)


def window_frames(clip: dict, row: dict, renderer: ModelRenderer) -> np.ndarray:
    """The true frames of an MDN window (`row`) of `clip`, checked against the renderer's size."""
    truth = decode_frames(clip["frames"], np.asarray(row["centres"]))
    if truth.shape[1] != renderer.size:
        raise ValueError(f"the renderer was trained on {renderer.size} px frames but the test clips are {truth.shape[1]} px")
    return truth


def write_demo_videos(config: Any, workdir: Path, clips: int, panel_px: int) -> list[str]:
    """One mp4 per held-out clip under `<workdir>/videos`; returns their paths."""
    if clips <= 0:
        return []
    workdir = Path(workdir)
    test = datasets.clip_source(datasets.dataset_dir(config.data), "test")
    rows, tracks = mdn_tracks(workdir / "mdn", range(min(clips, len(test))))
    renderer = ModelRenderer(workdir / "renderer")
    out_dir = workdir / "videos"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (row, track) in enumerate(zip(rows, tracks)):
        clip = test[i]
        centres = np.asarray(row["centres"])
        truth = window_frames(clip, row, renderer)
        reference = truth[int(row["reference_index"])]
        generated = renderer.bind(reference)(track)
        # Drawn at the panel's resolution, not upscaled from the frame's.
        zoom = panel_px / truth.shape[1]
        canvas = np.full((len(truth), panel_px, panel_px, 3), 32, np.uint8)
        landmarks = overlay_landmarks(overlay_landmarks(canvas, row["landmarks"] * zoom, (0, 200, 0)), track * zoom, (230, 40, 40))
        panels = [_panel(np.repeat(reference[None], len(truth), 0), panel_px), _panel(generated, panel_px), _panel(truth, panel_px), landmarks]
        video = np.concatenate(panels, axis=2)
        strip = _label_strip(video.shape[2], panel_px)
        video = np.concatenate([np.broadcast_to(strip, (len(video), *strip.shape)), video], axis=1)
        audio = np.asarray(clip["audio"], np.float32)[centres[0] * SAMPLES_PER_FRAME : (centres[-1] + 1) * SAMPLES_PER_FRAME]
        path = out_dir / f"test_clip{i:02d}.mp4"
        write_video(path, video, fps=25, audio=audio, sample_rate=int(clip["sample_rate"]))
        paths.append(str(path))
    return paths
