"""VoxCeleb1 audio for speaker verification: `wav/idXXXXX/<youtube id>/NNNNN.wav` plus trial lists.

Examples are audio-only schema clips (no frames, T = 0). Speakers named in any trial list form
the `test` split (VoxCeleb1-O: id10270-id10309), the rest `train`. Each trial list
(`veri_test.txt`, `veri_test2.txt`, `list_test_all2.txt`, `list_test_hard2.txt`, ...) is stored in
the metadata as `trials[<list name>] = [[label, clip_id_1, clip_id_2], ...]`, with paths
normalised to clip ids (prefixes such as `voxceleb1/` or `wav/` and the `.wav` suffix dropped).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from data_pipelines.real.builder import RealTalkBuilder
from data_pipelines.real.tasks import Task

_SPEAKER = re.compile(r"^id\d{5}$")
TRIAL_PATTERNS = ("veri_test*.txt", "list_test_*.txt")


class Voxceleb1(RealTalkBuilder):
    """VoxCeleb1 utterances (16 kHz mono) and verification trial lists, for speaker-embedding EER."""

    name = "voxceleb1"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    VoxCeleb1 needs a request form (https://www.robots.ox.ac.uk/~vgg/data/voxceleb/; mirrors:
    mm.kaist.ac.kr/datasets/voxceleb or a Hugging Face copy). Put the unzipped wav tree(s) in
    manual_dir as wav/idXXXXX/<youtube id>/NNNNN.wav (or vox1_dev_wav/wav/... and
    vox1_test_wav/wav/...) and the trial lists (veri_test.txt, veri_test2.txt, list_test_all2.txt,
    list_test_hard2.txt) directly in manual_dir.
    """

    def scan(self, manual_dir: str) -> list[Task]:
        return scan_voxceleb1(manual_dir)

    def extra_metadata(self, manual_dir: str, tasks: list[Task]) -> dict[str, Any]:
        return {"trials": read_trials(manual_dir)}

    def report_extra(self, outcomes: list) -> dict[str, Any]:
        """Trials naming clips that are not in the dataset (missing or skipped files)."""
        kept = {o.clip_id for o in outcomes if o.kept}
        missing = {}
        for name, trials in self.info.metadata.get("trials", {}).items():
            bad = [t for t in trials if t[1] not in kept or t[2] not in kept]
            missing[name] = {"trials": len(trials), "with_missing_clips": len(bad)}
        return {"trials": missing}


def wav_roots(manual_dir: str) -> list[Path]:
    root = Path(manual_dir)
    roots = [root / "wav"] if (root / "wav").is_dir() else []
    roots += sorted(p for p in root.glob("*/wav") if p.is_dir())
    return roots


def normalise_trial_path(path: str) -> str:
    """`voxceleb1/wav/id10270/x/00001.wav` -> `id10270/x/00001`."""
    parts = Path(path.strip()).with_suffix("").parts
    for i, part in enumerate(parts):
        if _SPEAKER.match(part):
            return "/".join(parts[i:])
    raise ValueError(f"trial path {path!r} names no idXXXXX speaker folder")


def read_trials(manual_dir: str) -> dict[str, list[list]]:
    trials = {}
    for pattern in TRIAL_PATTERNS:
        for path in sorted(Path(manual_dir).glob(pattern)):
            rows = []
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                fields = line.split()
                if len(fields) != 3 or fields[0] not in ("0", "1"):
                    raise ValueError(f"{path}:{number}: expected 'label path1 path2' with label 0 or 1, got {line!r}")
                rows.append([int(fields[0]), normalise_trial_path(fields[1]), normalise_trial_path(fields[2])])
            trials[path.stem] = rows
    return trials


def scan_voxceleb1(manual_dir: str) -> list[Task]:
    test_speakers = {clip.split("/")[0] for rows in read_trials(manual_dir).values() for row in rows for clip in row[1:]}
    tasks = {}
    for root in wav_roots(manual_dir):
        for wav in sorted(root.glob("id*/*/*.wav")):
            speaker = wav.parent.parent.name
            if not _SPEAKER.match(speaker):
                continue
            clip_id = f"{speaker}/{wav.parent.name}/{wav.stem}"
            tasks.setdefault(clip_id, Task(
                clip_id=clip_id,
                split="test" if speaker in test_speakers else "train",
                speaker_id=speaker,
                path=os.path.relpath(wav, manual_dir),
                audio_only=True,
            ))  # fmt: skip
    return list(tasks.values())
