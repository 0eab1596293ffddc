"""VoxCeleb2 from its distributed layout: `dev/mp4/idXXXXX/<youtube id>/NNNNN.mp4` + `dev/aac/.../NNNNN.m4a`."""

from __future__ import annotations

import os
import re
from pathlib import Path

from data_pipelines.real.builder import RealTalkBuilder
from data_pipelines.real.tasks import Task

SPLIT_DIRS = {"dev": "train", "test": "test"}
_SPEAKER = re.compile(r"^id\d{5}$")


class Voxceleb2(RealTalkBuilder):
    """VoxCeleb2 talking heads: 256 px stable face crops at 25 fps, 16 kHz audio, dlib landmarks."""

    name = "voxceleb2"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    VoxCeleb2 needs a request form (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/; mirrors:
    mm.kaist.ac.kr/datasets/voxceleb or a Hugging Face copy). Unzip so that manual_dir holds
    dev/mp4/idXXXXX/<youtube id>/NNNNN.mp4 (and optionally dev/aac/idXXXXX/<youtube id>/NNNNN.m4a),
    and the same under test/. A flat dev/idXXXXX/... (no mp4/ level) is accepted too. Without an
    m4a the mp4's own audio stream is used.
    """

    def scan(self, manual_dir: str) -> list[Task]:
        return scan_voxceleb2(manual_dir)


def scan_voxceleb2(manual_dir: str) -> list[Task]:
    tasks = []
    for folder, split in SPLIT_DIRS.items():
        base = Path(manual_dir) / folder
        video_root = base / "mp4" if (base / "mp4").is_dir() else base
        if not video_root.is_dir():
            continue
        for video in sorted(video_root.glob("id*/*/*.mp4")):
            speaker, youtube, clip = video.parent.parent.name, video.parent.name, video.stem
            if not _SPEAKER.match(speaker):
                continue
            audio = base / "aac" / speaker / youtube / f"{clip}.m4a"
            tasks.append(
                Task(
                    clip_id=f"{speaker}/{youtube}/{clip}",
                    split=split,
                    speaker_id=speaker,
                    path=os.path.relpath(video, manual_dir),
                    audio=os.path.relpath(audio, manual_dir),
                )
            )
    return tasks
