"""Preview of SynthTalk clips: an mp4 (h264 + AAC) with the landmarks drawn, and a contact sheet."""

from __future__ import annotations

import os

import numpy as np

from data_pipelines.synthtalk.clip import Clip, generate_clip
from data_pipelines.synthtalk.specs import VariantSpec
from macl_jax.media.draw import contact_sheet, overlay_landmarks, write_png
from macl_jax.media.video_io import write_video


def clip_video(clip: Clip, draw_landmarks: bool = True) -> np.ndarray:
    """Frames with the ground-truth 2-D landmarks drawn on them."""
    if not draw_landmarks:
        return clip.frames
    return overlay_landmarks(clip.frames, clip.landmarks_2d)


def write_preview(
    spec: VariantSpec,
    out_dir: str,
    *,
    split: str = "train",
    speakers: tuple[int, ...] = (0,),
    clip_index: int = 0,
    sheet_columns: int = 8,
    sheet_frames: int = 8,
) -> dict[str, str]:
    """Writes `<variant>_<speaker>.mp4` per speaker and one `<variant>_sheet.png`.

    The contact sheet has one row per speaker: `sheet_frames` evenly spaced frames of its clip with
    the landmarks drawn. Returns the written paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths: dict[str, str] = {}
    rows = []
    labels = []
    for speaker in speakers:
        clip = generate_clip(spec, split, speaker, clip_index)
        video = clip_video(clip)
        path = os.path.join(out_dir, f"{spec.name}_{clip.speaker.speaker_id}.mp4")
        write_video(path, video, fps=spec.fps, audio=clip.audio, sample_rate=spec.sample_rate)
        paths[clip.speaker.speaker_id] = path
        picks = np.linspace(0, len(video) - 1, sheet_frames).round().astype(int)
        rows.append(np.concatenate([clip.frames[picks[: sheet_frames // 2]], video[picks[sheet_frames // 2 :]]]))
        labels += [f"{clip.speaker.speaker_id[-5:]} {clip.emotion} f{p}" for p in picks]
    sheet = contact_sheet(np.concatenate(rows), columns=sheet_columns, labels=labels)
    sheet_path = os.path.join(out_dir, f"{spec.name}_sheet.png")
    write_png(sheet_path, sheet)
    paths["sheet"] = sheet_path
    return paths
