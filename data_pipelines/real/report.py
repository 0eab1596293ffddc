"""`preprocess_report.json`: what became of every raw file of a build.

    {"dataset": ..., "config": ..., "manual_dir": ..., "seconds": ...,
     "counts": {"files": N, "kept": K, "skipped": N - K, "frames": F},
     "skipped": {"<reason>": {"count": n, "description": ..., "files": [{"path", "clip_id", "detail"}]}},
     "notes": {"<note>": {"count": n, "description": ..., "clips": [clip_id, ...]}},
     "splits": {"train": {"kept": .., "skipped": ..}, ...},
     "clips": {"<clip_id>": {"crop_box": [x0, y0, side], "start_frame", "closed_mouth", "source": {...}}},
     "processing": {"seconds_per_clip": .., "frames_per_second_per_worker": ..}, ...}

Reasons and notes are the keys of `preprocess.SKIP_REASONS` and `preprocess.NOTES`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from data_pipelines.real.preprocess import NOTES, SKIP_REASONS
from data_pipelines.real.tasks import Outcome
from macl_jax.media.atomic import atomic_output

REPORT_NAME = "preprocess_report.json"


def build_report(dataset: str, config: str, manual_dir: str, outcomes: list[Outcome], seconds: float,
                 extra: dict | None = None) -> dict[str, Any]:
    """The report dict of a list of Outcomes (any order; sorted here for stable files)."""
    outcomes = sorted(outcomes, key=lambda o: (o.split, o.clip_id, o.path))
    kept = [o for o in outcomes if o.kept]
    skipped: dict[str, Any] = {}
    for o in outcomes:
        if not o.kept:
            entry = skipped.setdefault(o.reason, {"count": 0, "description": SKIP_REASONS.get(o.reason, ""), "files": []})
            entry["count"] += 1
            entry["files"].append({"path": o.path, "clip_id": o.clip_id, "detail": o.detail})
    notes: dict[str, Any] = {}
    for o in kept:
        for note in o.notes:
            entry = notes.setdefault(note, {"count": 0, "description": NOTES.get(note, ""), "clips": []})
            entry["count"] += 1
            entry["clips"].append(o.clip_id)
    splits: dict[str, dict[str, int]] = {}
    for o in outcomes:
        s = splits.setdefault(o.split, {"kept": 0, "skipped": 0})
        s["kept" if o.kept else "skipped"] += 1
    work = sum(o.seconds for o in outcomes)
    frames = sum(o.frames for o in kept)
    return {
        "dataset": dataset,
        "config": config,
        "manual_dir": manual_dir,
        "seconds": round(seconds, 3),
        "counts": {"files": len(outcomes), "kept": len(kept), "skipped": len(outcomes) - len(kept), "frames": frames},
        "skipped": dict(sorted(skipped.items())),
        "notes": dict(sorted(notes.items())),
        "splits": splits,
        # Per kept clip: the crop box (x0, y0, side) in source pixels (pixel-edge coordinates),
        # the first kept 25 fps frame, the closed-mouth frame and the source streams.
        "clips": {o.clip_id: o.info for o in kept},
        "processing": {
            "worker_seconds": round(work, 3),
            "seconds_per_clip": round(work / max(1, len(outcomes)), 4),
            "frames_per_second_per_worker": round(frames / work, 2) if work > 0 else None,
        },
        **(extra or {}),
    }


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1))
    return Path(path)


def load_report(dataset_dir: str) -> dict[str, Any]:
    """The report of a built dataset."""
    with open(os.path.join(dataset_dir, REPORT_NAME)) as f:
        return json.load(f)


def write_outcome_file(directory: str, outcome: Outcome) -> None:
    """One small file per clip (Beam workers have no shared list); named by a hash of the clip."""
    name = hashlib.sha1(f"{outcome.split}/{outcome.clip_id}/{outcome.path}".encode()).hexdigest()[:20] + ".json"
    with atomic_output(os.path.join(directory, name)) as tmp:
        Path(tmp).write_text(json.dumps(outcome.to_json(), sort_keys=True))


def read_outcome_dir(directory: str) -> list[Outcome]:
    out = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.endswith(".json") and not name.startswith("."):
            with open(os.path.join(directory, name)) as f:
                out.append(Outcome.from_json(json.load(f)))
    return out
