"""Runs the entry point once on this machine, with the environment for its devices.

    python -m launch.local [--num_cpu_devices N] [--gpu_mem_fraction F] [--no_preallocate] \
        [--compilation_cache DIR] [--dry-run] -- --config configs/smoke.py:tiny --workdir runs/exp1

--num_cpu_devices adds --config.runtime.num_cpu_devices=N (splits the host CPU into N devices);
--gpu_mem_fraction sets XLA_PYTHON_CLIENT_MEM_FRACTION, --no_preallocate sets
XLA_PYTHON_CLIENT_PREALLOCATE=false (both for GPUs shared with other programs);
--compilation_cache adds --config.runtime.compilation_cache_dir=DIR. Everything after `--` goes
to macl_jax.main unchanged. The exit status is the entry point's.

The helpers `split_main_args` and `check_main_args` are shared with launch.tpu_pod and launch.slurm.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys


def split_main_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(launcher arguments, entry point arguments): everything after the first `--` is the latter.

    Split by hand rather than with argparse.REMAINDER so that no entry point argument can be taken
    for a launcher option.
    """
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def workdir_of(main_args: list[str]) -> str | None:
    """The value of --workdir in the entry point arguments, or None."""
    for i, arg in enumerate(main_args):
        if arg.startswith("--workdir="):
            return arg.split("=", 1)[1]
        if arg == "--workdir" and i + 1 < len(main_args):
            return main_args[i + 1]
    return None


def check_main_args(parser: argparse.ArgumentParser, main_args: list[str]) -> str:
    """Fails through `parser` unless the entry point arguments name a usable --workdir; returns it."""
    if not main_args:
        parser.error("missing the entry point arguments: end the command with -- --config configs/<x>.py:<preset> --workdir DIR")
    workdir = workdir_of(main_args)
    if not workdir:
        parser.error(f"the entry point arguments {shlex.join(main_args)!r} have no --workdir: add --workdir DIR after --")
    if "://" in workdir:
        parser.error(f"--workdir {workdir}: give a local or mounted path (mount Cloud Storage with gcsfuse), not a URL")
    return workdir


def _has_override(main_args: list[str], key: str) -> bool:
    return any(arg.startswith(f"--config.{key}=") for arg in main_args)


def plan(
    main_args: list[str],
    *,
    num_cpu_devices: int | None = None,
    gpu_mem_fraction: float | None = None,
    no_preallocate: bool = False,
    compilation_cache: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """(environment additions, argv) for the one process."""
    env: dict[str, str] = {}
    if gpu_mem_fraction is not None:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(gpu_mem_fraction)
    if no_preallocate:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    argv = [sys.executable, "-m", "macl_jax.main", *main_args]
    if num_cpu_devices is not None:
        argv.append(f"--config.runtime.num_cpu_devices={num_cpu_devices}")
    if compilation_cache is not None:
        argv.append(f"--config.runtime.compilation_cache_dir={compilation_cache}")
    return env, argv


def shell_line(env: dict[str, str], argv: list[str]) -> str:
    """`K=V ... cmd args`, quoted so that it can be pasted into a shell."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])


def run(env: dict[str, str], argv: list[str]) -> int:
    """Runs the process; returns its exit status (128+N when signal N ended it)."""
    proc = subprocess.Popen(argv, env={**os.environ, **env})
    # A scheduler's SIGTERM goes to this process only; pass it on so the run can checkpoint.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # Ctrl-C reached the child too (same process group): let it finish
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.local",
        usage="%(prog)s [--num_cpu_devices N] [--gpu_mem_fraction F] [--no_preallocate] [--compilation_cache DIR] "
        "[--dry-run] -- ENTRY_POINT_ARGS",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--num_cpu_devices", type=int, default=None, metavar="N", help="split the host CPU into N devices")
    parser.add_argument("--gpu_mem_fraction", type=float, default=None, metavar="F", help="XLA_PYTHON_CLIENT_MEM_FRACTION, in (0, 1]")
    parser.add_argument("--no_preallocate", action="store_true", help="XLA_PYTHON_CLIENT_PREALLOCATE=false")
    parser.add_argument("--compilation_cache", default=None, metavar="DIR", help="persistent XLA compilation cache")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    own, main_args = split_main_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    check_main_args(parser, main_args)
    if args.num_cpu_devices is not None and args.num_cpu_devices < 1:
        parser.error(f"argument --num_cpu_devices: must be >= 1 (got {args.num_cpu_devices})")
    if args.gpu_mem_fraction is not None and not 0 < args.gpu_mem_fraction <= 1:
        parser.error(f"argument --gpu_mem_fraction: must be in (0, 1], e.g. 0.5 (got {args.gpu_mem_fraction})")
    if args.compilation_cache is not None and not args.compilation_cache.strip():
        parser.error("argument --compilation_cache: give a directory, e.g. --compilation_cache ~/.cache/macl-jax-xla")
    for flag, key in (("--num_cpu_devices", "runtime.num_cpu_devices"), ("--compilation_cache", "runtime.compilation_cache_dir")):
        if getattr(args, flag[2:]) is not None and _has_override(main_args, key):
            parser.error(f"argument {flag}: --config.{key} is also given after --; keep one of the two")
    env, cmd = plan(
        main_args,
        num_cpu_devices=args.num_cpu_devices,
        gpu_mem_fraction=args.gpu_mem_fraction,
        no_preallocate=args.no_preallocate,
        compilation_cache=args.compilation_cache,
    )
    if args.dry_run:
        print(shell_line(env, cmd))
        return 0
    return run(env, cmd)


if __name__ == "__main__":
    sys.exit(main())
