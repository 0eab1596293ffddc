"""Writes an sbatch script that runs the entry point on GPU nodes under SLURM, and submits it.

    python -m launch.slurm --nodes 2 --gpus_per_node 8 [--mode per-node|per-gpu] [--partition P] \
        [--time 24:00:00] [--cpus_per_task C] [--job_name macl-jax] [--output slurm/%x-%j.out] \
        [--script slurm/JOB_NAME.sbatch] [--venv .venv] [--requeue] [--dry-run] -- \
        --config configs/<x>.py:<preset> --workdir /shared/runs/exp1

The script's body is `srun <venv>/bin/python -m macl_jax.main ENTRY_POINT_ARGS`: srun starts
the tasks and jax.distributed.initialize() finds the others from SLURM's environment
(SLURM_PROCID, SLURM_NTASKS, the node list), so there are no coordinator variables. The workdir
must be on a file system that every node sees.

--mode per-node (default): one task per node (--ntasks-per-node=1 --gpus-per-node=G) that drives
    all G GPUs of its node.
--mode per-gpu: one task per GPU (--ntasks-per-node=G --gpus-per-task=1).
Either way the script sets JAX_LOCAL_DEVICE_IDS, because JAX's SLURM detection would otherwise
give each task the GPU numbered SLURM_LOCALID only (one GPU per node in per-node mode, a GPU the
task cannot see in per-gpu mode).

--requeue: SLURM sends SIGTERM to the tasks two minutes before the time limit
(`--signal=TERM@120`, no `B:`, which would signal only the batch shell). The run saves a
checkpoint and exits 143; the script then calls `scontrol requeue`, and the requeued job resumes
from that checkpoint. Its log is appended to (`--open-mode=append`), not overwritten.

Without --dry-run the script is written to --script and submitted with `sbatch`; with it, the
commands that would do so are printed (a `cat > FILE <<'EOF'` here-document holds the script).
Relative paths are relative to the repository root, where the job also runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys

from launch.local import check_main_args, split_main_args

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Seconds between SLURM's warning SIGTERM and the time limit: room for the checkpoint save.
SIGNAL_LEAD_S = 120


def sbatch_script(
    main_args: list[str],
    *,
    nodes: int,
    gpus_per_node: int,
    mode: str = "per-node",
    partition: str | None = None,
    time: str | None = None,
    cpus_per_task: int | None = None,
    job_name: str = "macl-jax",
    output: str = "slurm/%x-%j.out",
    venv: str = ".venv",
    requeue: bool = False,
) -> str:
    """The text of the sbatch script."""
    header = [f"--job-name={job_name}", f"--nodes={nodes}"]
    if mode == "per-node":
        header += ["--ntasks-per-node=1", f"--gpus-per-node={gpus_per_node}"]
        device_ids = ",".join(str(i) for i in range(gpus_per_node))
        devices_why = "# One task per node drives all of its GPUs (JAX alone would use GPU SLURM_LOCALID only)."
    else:
        header += [f"--ntasks-per-node={gpus_per_node}", "--gpus-per-task=1"]
        device_ids = "0"
        devices_why = "# Each task sees only its own GPU, as device 0 (JAX alone would use GPU SLURM_LOCALID)."
    if cpus_per_task is not None:
        header.append(f"--cpus-per-task={cpus_per_task}")
    if partition:
        header.append(f"--partition={partition}")
    if time:
        header.append(f"--time={time}")
    header.append(f"--output={output}")
    if requeue:
        header += ["--requeue", f"--signal=TERM@{SIGNAL_LEAD_S}", "--open-mode=append"]
    srun = shlex.join(["srun", os.path.join(venv, "bin", "python"), "-m", "macl_jax.main", *main_args])
    lines = ["#!/bin/bash", *(f"#SBATCH {h}" for h in header), "", devices_why, f"export JAX_LOCAL_DEVICE_IDS={device_ids}", srun]
    if requeue:
        lines += [
            "status=$?",
            "# 143: the run saved a checkpoint on SIGTERM before the time limit; queue it again to resume.",
            'if [ "$status" -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
            'exit "$status"',
        ]
    return "\n".join(lines) + "\n"


def directories(*paths: str) -> list[str]:
    """The parent directories of `paths` that have to exist (SLURM does not create them)."""
    out: list[str] = []
    for path in paths:
        parent = os.path.dirname(path)
        if parent and parent not in out:
            out.append(parent)
    return out


def dry_run_lines(script_path: str, script: str, dirs: list[str]) -> list[str]:
    """Shell lines that write the script and submit it, as the real run does."""
    lines = [shlex.join(["mkdir", "-p", *dirs])] if dirs else []
    lines.append(f"cat > {shlex.quote(script_path)} <<'EOF'")
    lines += script.rstrip("\n").split("\n")
    lines += ["EOF", shlex.join(["sbatch", script_path])]
    return lines


_HEADER_SAFE = re.compile(r"[^\s'\"\\]+")
_SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}|(?i:unlimited|infinite)")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rejects malformed arguments before anything is written, naming the argument and the fix."""
    if args.nodes < 1:
        parser.error(f"argument --nodes: must be >= 1 (got {args.nodes})")
    if args.gpus_per_node < 1:
        parser.error(f"argument --gpus_per_node: must be >= 1 (got {args.gpus_per_node})")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        parser.error(f"argument --cpus_per_task: must be >= 1 (got {args.cpus_per_task})")
    if args.time is not None and not _SLURM_TIME.fullmatch(args.time):
        parser.error(f"argument --time: {args.time!r} is not a SLURM time such as 90, 4:00:00 or 2-00:00:00")
    for flag in ("job_name", "partition", "output", "time"):
        value = getattr(args, flag)
        if value is not None and not _HEADER_SAFE.fullmatch(value):
            parser.error(f"argument --{flag}: {value!r} must be non-empty, without spaces or quotes (it goes into an #SBATCH line)")
    if "%" in os.path.dirname(args.output):
        parser.error(f"argument --output: {args.output!r}: put %j/%x patterns in the file name only; SLURM does not create directories")
    if not args.venv:
        parser.error("argument --venv: give the virtual environment's directory, e.g. .venv")
    check_main_args(parser, args.main_args)
    if any("\n" in arg for arg in args.main_args):
        parser.error("an entry point argument after -- contains a line break; the sbatch script needs one line per command")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.slurm",
        usage="%(prog)s [--nodes N] --gpus_per_node G [--mode {per-node,per-gpu}] [--partition P] [--time T] "
        "[--cpus_per_task C] [--job_name NAME] [--output PATTERN] [--script FILE] [--venv DIR] [--requeue] [--dry-run] "
        "-- ENTRY_POINT_ARGS",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=1, metavar="N")
    parser.add_argument("--gpus_per_node", type=int, required=True, metavar="G")
    parser.add_argument("--mode", choices=("per-node", "per-gpu"), default="per-node", help="one task per node or per GPU")
    parser.add_argument("--partition", default=None, metavar="P")
    parser.add_argument("--time", default=None, metavar="T", help="time limit, e.g. 24:00:00 or 2-00:00:00")
    parser.add_argument("--cpus_per_task", type=int, default=None, metavar="C")
    parser.add_argument("--job_name", default="macl-jax", metavar="NAME")
    parser.add_argument("--output", default="slurm/%x-%j.out", metavar="PATTERN", help="log file (%%x job name, %%j job id)")
    parser.add_argument("--script", default=None, metavar="FILE", help="where to write the script (default slurm/JOB_NAME.sbatch)")
    parser.add_argument("--venv", default=".venv", metavar="DIR", help="virtual environment made by launch/setup.sh")
    parser.add_argument("--requeue", action="store_true", help="checkpoint before the time limit and requeue")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and submit nothing")
    own, main_args = split_main_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    args.main_args = main_args
    _check(parser, args)
    script_path = args.script or os.path.join("slurm", f"{args.job_name}.sbatch")
    script = sbatch_script(
        main_args,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        mode=args.mode,
        partition=args.partition,
        time=args.time,
        cpus_per_task=args.cpus_per_task,
        job_name=args.job_name,
        output=args.output,
        venv=args.venv,
        requeue=args.requeue,
    )
    dirs = directories(script_path, args.output)
    if args.dry_run:
        print("\n".join(dry_run_lines(script_path, script, dirs)))
        return 0
    python = os.path.join(REPO_ROOT, args.venv, "bin", "python")
    if not os.path.exists(python):
        print(f"slurm: --venv {args.venv}: {python} not found; create it with `bash launch/setup.sh cuda`", file=sys.stderr)
        return 2
    if shutil.which("sbatch") is None:
        print("slurm: sbatch not found: run this on a SLURM login node, or use --dry-run to see the script", file=sys.stderr)
        return 127
    for d in dirs:
        os.makedirs(os.path.join(REPO_ROOT, d), exist_ok=True)
    with open(os.path.join(REPO_ROOT, script_path), "w") as f:
        f.write(script)
    print(f"slurm: wrote {script_path}; submitting it", flush=True)
    return subprocess.run(["sbatch", script_path], cwd=REPO_ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
