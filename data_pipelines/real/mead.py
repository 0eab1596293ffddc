"""MEAD from its distributed layout: `<actor>/video/<view>/<emotion>/level_<k>/<n>.mp4` (30 fps) and
`<actor>/audio/<emotion>/level_<k>/<n>.m4a`.

Also accepted: W021's extra level `video/1/<view>/...` and the flattened mirrors
`video/<view>/<emotion>_level_<k>/<n>.mp4` with `audio/[<view>/]<emotion>_level_<k>/<n>.{m4a,wav}`.
Clip ids are `<actor>/<view>/<emotion>/level_<k>/<n>`; the common hold-out actors M003, M030 and
W024 form the test split.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import tensorflow_datasets as tfds

from data_pipelines import schema
from data_pipelines.real.builder import VERSION, RealTalkBuilder
from data_pipelines.real.tasks import Task

VIEWS = ("front", "down", "top", "left_30", "left_60", "right_30", "right_60")
TEST_ACTORS = ("M003", "M030", "W024")
_ACTOR = re.compile(r"^[MW]\d{3}$")
_LEVEL = re.compile(r"^level_(\d)$")
_FLAT = re.compile(r"^([a-z]+)_level_(\d)$")


@dataclasses.dataclass(eq=False)
class MeadConfig(tfds.core.BuilderConfig):
    views: tuple[str, ...] = ("front",)


class Mead(RealTalkBuilder):
    """MEAD emotional talking heads: 256 px stable face crops resampled 30 -> 25 fps, 16 kHz audio."""

    name = "mead"
    BUILDER_CONFIGS = [
        MeadConfig(name="front", version=VERSION, description="front view only (the common evaluation view)", views=("front",)),
        MeadConfig(name="all_views", version=VERSION, description="all seven camera views", views=VIEWS),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    MEAD (https://wywu.github.io/projects/MEAD/MEAD.html, research use only): download the
    per-actor video.tar and audio.tar and extract them so that manual_dir holds
    <actor>/video/<view>/<emotion>/level_<k>/<NNN>.mp4 and <actor>/audio/<emotion>/level_<k>/<NNN>.m4a
    (actors M### / W###). W021's extra video/1/ level and flattened <emotion>_level_<k> folders
    are accepted.
    """

    def scan(self, manual_dir: str) -> list[Task]:
        return scan_mead(manual_dir, self.builder_config.views)


def _parse_video(rel: tuple[str, ...]) -> tuple[str, str, int, str] | None:
    """(view, emotion, level, n) from the parts below <actor>/video/, or None if it does not fit."""
    parts = list(rel)
    if len(parts) == 5 and parts[0].isdigit():  # W021: video/1/<view>/...
        parts = parts[1:]
    name = Path(parts[-1]).stem
    if len(parts) == 4 and _LEVEL.match(parts[2]):
        return parts[0], parts[1], int(_LEVEL.match(parts[2]).group(1)), name
    if len(parts) == 3 and _FLAT.match(parts[1]):
        m = _FLAT.match(parts[1])
        return parts[0], m.group(1), int(m.group(2)), name
    return None


def _audio_path(actor_dir: Path, view: str, emotion: str, level: int, n: str) -> Path:
    candidates = [
        actor_dir / "audio" / emotion / f"level_{level}" / f"{n}.m4a",
        actor_dir / "audio" / f"{emotion}_level_{level}" / f"{n}.m4a",
        actor_dir / "audio" / view / f"{emotion}_level_{level}" / f"{n}.m4a",
        actor_dir / "audio" / view / f"{emotion}_level_{level}" / f"{n}.wav",
        actor_dir / "audio" / emotion / f"level_{level}" / f"{n}.wav",
    ]
    return next((c for c in candidates if c.exists()), candidates[0])


def scan_mead(manual_dir: str, views: tuple[str, ...] = ("front",)) -> list[Task]:
    tasks = []
    root = Path(manual_dir)
    for actor_dir in sorted(p for p in root.iterdir() if p.is_dir() and _ACTOR.match(p.name)):
        for video in sorted((actor_dir / "video").rglob("*.mp4")):
            parsed = _parse_video(video.relative_to(actor_dir / "video").parts)
            if parsed is None or parsed[1] not in schema.EMOTIONS or parsed[0] not in views:
                continue
            view, emotion, level, n = parsed
            actor = actor_dir.name
            tasks.append(
                Task(
                    clip_id=f"{actor}/{view}/{emotion}/level_{level}/{n}",
                    split="test" if actor in TEST_ACTORS else "train",
                    speaker_id=actor,
                    path=os.path.relpath(video, manual_dir),
                    audio=os.path.relpath(_audio_path(actor_dir, view, emotion, level, n), manual_dir),
                    emotion=emotion,
                    intensity=level,
                )
            )
    return tasks
