"""The one entry point.

    python -m macl_jax.main --config configs/<x>.py:<preset> --workdir <dir> [--config.key=value ...]
    macl-jax [<stage>] [--config ...] --workdir <dir> [--config.key=value ...]
    macl-jax pipeline --workdir <dir> [--quick]        # data, SFE -> MDN -> renderer, report, demo videos
    macl-jax generate --checkpoint <dir> --image FACE --audio SPEECH --out OUT.mp4   (see `macl-jax generate --help`)
    macl-jax import --from KIND CHECKPOINT --workdir <dir>   (a run from the authors' PyTorch weights)

The stage is the first positional argument if given (its default config is used when --config
is absent), otherwise `config.stage`. Launch scripts only add environment around this command.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

from absl import app, flags, logging

from macl_jax import stages
from macl_jax.config import ConfigError, freeze, load_config, write_json_atomic, write_resolved_config

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Config file and preset, e.g. configs/smoke.py:tiny.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and outputs (local path or gs://).")

USAGE = (
    "usage: macl-jax [STAGE] [--config FILE.py[:PRESET]] --workdir DIR [--config.key=value ...]\n"
    f"stages: {', '.join(stages.available())}\n"
    "generation: macl-jax generate --checkpoint DIR --image FACE --audio SPEECH --out OUT.mp4 (--help for more)\n"
    "import: macl-jax import --from macl-sfe|macl-mdn|makeittalk-renderer CHECKPOINT --workdir DIR (--help for more)"
)


def split_argv(argv: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """(stage, config overrides, remaining absl argv without the program name)."""
    args = list(argv)
    stage = None
    if args and not args[0].startswith("-"):
        stage = args.pop(0)
    overrides, rest = [], []
    for arg in args:
        if arg.startswith("--config.") and "=" in arg:
            overrides.append(arg[len("--config."):])
        elif arg.startswith("--config."):
            raise ConfigError(f"override {arg!r} needs a value: {arg}=VALUE")
        else:
            rest.append(arg)
    return stage, overrides, rest


def fail(message: str, code: int = 2) -> None:
    print(f"macl-jax: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _main(stage: str | None, overrides: list[str], argv: Sequence[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {list(argv[1:])}\n{USAGE}")
    if FLAGS.workdir is None:
        fail(f"--workdir is required\n{USAGE}")
    spec = FLAGS.config
    try:
        if spec is None:
            if stage is None:
                fail(f"give a stage or --config\n{USAGE}")
            spec = stages.default_config(stage)
        config = load_config(spec, overrides)
        stage = stage or config.stage
        stages.check_config_stage(stage, config.stage)
        stage_fn = stages.get_stage(stage)
    except (ConfigError, KeyError) as exc:
        fail(exc.args[0] if exc.args else str(exc))

    workdir = Path(FLAGS.workdir).absolute()
    if "://" in FLAGS.workdir:
        fail(
            f"--workdir {FLAGS.workdir}: give a local or mounted path; for Cloud Storage mount the bucket "
            "with gcsfuse (launch/ does this on TPU VMs) and pass the mount point"
        )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        fail(f"cannot write to --workdir {workdir}: {exc.strerror or exc}. Choose a writable directory.")

    # Deferred until the arguments are checked, and in this order: these import jax (seconds), and
    # the runtime must be set up before any module that may touch a device is imported.
    from macl_jax.train.runtime import setup_runtime

    setup_runtime(config)
    import jax

    from macl_jax.train.restore import EvalError

    if jax.process_index() == 0:
        write_resolved_config(config, workdir)
    logging.info("stage %s, config %s, %d process(es), %d device(s)", stage, spec, jax.process_count(), jax.device_count())
    try:
        summary = stage_fn(freeze(config), workdir)
    except (EvalError, ConfigError) as exc:
        fail(str(exc))
    if jax.process_index() == 0:
        write_json_atomic(workdir / f"{stage}_summary.json", summary)
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    if summary.get("preempted"):
        # Conventional exit status for "terminated by SIGTERM": schedulers requeue on it.
        raise SystemExit(143)


def run(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`macl-jax`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return
    if argv and argv[0] == "generate":
        from macl_jax.infer.generate import main as generate  # deferred: jax and the generation stack

        raise SystemExit(generate(argv[1:]))
    if argv and argv[0] == "import":
        from macl_jax.importers.cli import main as import_checkpoint  # deferred like generate

        raise SystemExit(import_checkpoint(argv[1:]))
    if argv and argv[0] == "pipeline" and "--quick" in argv:
        if any(a == "--config" or a.startswith("--config=") for a in argv):
            fail("--quick selects configs/pipeline.py:quick; give it or --config, not both")
        argv = [a for a in argv if a != "--quick"] + ["--config", "configs/pipeline.py:quick"]
    try:
        stage, overrides, rest = split_argv(argv)
    except ConfigError as exc:
        fail(str(exc))
    if stage is not None and stage not in stages.STAGES:
        fail(f"unknown stage {stage!r}; available stages: {', '.join(stages.available())}")
    app.run(lambda absl_argv: _main(stage, overrides, absl_argv), argv=[sys.argv[0] or "macl-jax", *rest])


if __name__ == "__main__":
    run()
