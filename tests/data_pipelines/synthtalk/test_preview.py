"""The preview command writes a playable mp4 with audio and a contact sheet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from macl_jax.media.video_io import read_video

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_preview_command_writes_video_with_audio_and_sheet(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "data_pipelines.synthtalk", "preview", "--variant=mead_like_tiny",
         f"--out={tmp_path}", "--speakers=0,1", "--clip=5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    videos = sorted(tmp_path.glob("*.mp4"))
    assert len(videos) == 2
    video = read_video(videos[0])
    assert video.frames.shape == (64, 64, 64, 3) and video.fps == 25
    assert video.audio is not None and abs(len(video.audio) - 64 * 640) < 1024
    assert np.abs(video.audio).max() > 0.05
    sheet = np.asarray(Image.open(tmp_path / "mead_like_tiny_sheet.png"))
    assert sheet.shape[0] > 2 * 64 and sheet.shape[1] > 8 * 64
    # Landmarks are drawn in green on the second half of each row: some pure-green pixels exist.
    assert ((sheet[..., 1] > 200) & (sheet[..., 0] < 60) & (sheet[..., 2] < 60)).any()


def test_unknown_variant_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "data_pipelines.synthtalk", "preview", "--variant=lrs3_like_tiny", f"--out={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "unknown SynthTalk variant 'lrs3_like_tiny'" in proc.stderr
