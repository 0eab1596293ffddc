"""SynthTalk command line.

    python -m data_pipelines.synthtalk build   --variant voxceleb_like_tiny --data_dir data/tfds [--workers 2]
    python -m data_pipelines.synthtalk preview --variant mead_like_default --out previews/ [--speakers 0,1,2]
    python -m data_pipelines.synthtalk describe --variant voxceleb_like_default
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

from data_pipelines.synthtalk import builder
from data_pipelines.synthtalk.preview import write_preview
from data_pipelines.synthtalk.specs import parse_name, variant

_VARIANT = flags.DEFINE_string("variant", "voxceleb_like_tiny", "<kind>_<size>[_seed<N>], e.g. mead_like_default")
_DATA_DIR = flags.DEFINE_string("data_dir", "data/tfds", "TFDS data directory (build)")
_WORKERS = flags.DEFINE_integer("workers", 0, "generator processes (build); 0 = one per core")
_OUT = flags.DEFINE_string("out", "previews", "output directory (preview)")
_SPEAKERS = flags.DEFINE_string("speakers", "0,1,2,3", "comma-separated speaker indices (preview)")
_SPLIT = flags.DEFINE_string("split", "train", "split the previewed speakers belong to")
_CLIP = flags.DEFINE_integer("clip", 0, "clip index per speaker (preview)")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "override the variant's frame size (64, 128 or 256)")

_COMMANDS = ("build", "preview", "describe")


def _spec():
    spec = parse_name(_VARIANT.value)
    if _IMAGE_SIZE.value:
        spec = variant(spec.kind, spec.size, seed=spec.seed, image_size=_IMAGE_SIZE.value)  # named _<N>px
    return spec


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in _COMMANDS:
        print(f"usage: python -m data_pipelines.synthtalk {{{'|'.join(_COMMANDS)}}} [--flags]; see --helpfull", file=sys.stderr)
        return 2
    command = argv[1]
    try:
        return _run(command)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(command: str) -> int:
    spec = _spec()
    if command == "build":
        print(builder.build(spec, _DATA_DIR.value, num_workers=_WORKERS.value))
    elif command == "preview":
        speakers = tuple(int(s) for s in _SPEAKERS.value.split(",") if s.strip())
        for name, path in write_preview(spec, _OUT.value, split=_SPLIT.value, speakers=speakers, clip_index=_CLIP.value).items():
            print(f"{name}: {path}")
    else:
        summary = {split: spec.num_clips(split) for split in ("train", "validation", "test")}
        print(json.dumps({"name": spec.name, "clips": summary, "spec": spec.__dict__}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    app.run(main)
