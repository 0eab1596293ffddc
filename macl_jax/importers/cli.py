"""`macl-jax import --from KIND CHECKPOINT --workdir DIR [--config FILE.py:PRESET] [--config.key=value ...]`."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from macl_jax.checkpoint.foreign import ForeignCheckpointError
from macl_jax.config import ConfigError
from macl_jax.importers.common import import_run

# --from name -> module holding its IMPORTER (imported only when chosen or when naming a wrong model).
SOURCES = {
    "macl-sfe": "macl_jax.importers.macl_sfe",
    "macl-mdn": "macl_jax.importers.macl_mdn",
    "makeittalk-renderer": "macl_jax.importers.makeittalk",
}


def importers() -> dict:
    return {name: importlib.import_module(module).IMPORTER for name, module in SOURCES.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="macl-jax import",
        description="Write a run directory (config.json + Orbax checkpoint at step 0) from a PyTorch checkpoint "
        "saved by the authors' code; `eval`, `generate` and the training stage (to fine-tune) then use it like "
        "any run. See docs/checkpoint_import.md.",
    )
    parser.add_argument("--from", dest="source", required=True, choices=sorted(SOURCES), help="the model the checkpoint holds")
    parser.add_argument("checkpoint", help="the .pth/.pt file as the authors' script saved it")
    parser.add_argument("--workdir", required=True, help="new run directory (must not hold a run)")
    parser.add_argument("--config", default=None, help="config FILE.py:PRESET of the stage (default: the importer's)")
    return parser


def main(argv: Sequence[str]) -> int:
    args, rest = _parser().parse_known_args(list(argv))
    overrides, unknown = [], []
    for arg in rest:
        (overrides if arg.startswith("--config.") and "=" in arg else unknown).append(arg)
    if unknown:
        print(f"macl-jax import: error: unexpected arguments {unknown} (config overrides are --config.key=value)", file=sys.stderr)
        return 2
    try:
        everything = importers()
        summary = import_run(everything[args.source], everything, args.checkpoint, args.workdir, args.config,
                             [o[len("--config."):] for o in overrides])
    except (ForeignCheckpointError, ConfigError) as error:
        print(f"macl-jax import: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
