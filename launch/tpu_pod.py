"""Runs the entry point on a Cloud TPU VM slice, with gcloud.

    python -m launch.tpu_pod create --name NAME --zone ZONE --accelerator_type v4-32 [--spot] [--dry-run]
    python -m launch.tpu_pod setup  --name NAME --zone ZONE --bucket BUCKET [--mount /mnt/gcs] [--dry-run]
    python -m launch.tpu_pod run    --name NAME --zone ZONE [--dry-run] -- --config configs/<x>.py:<preset> \
        --workdir /mnt/gcs/runs/exp1
    python -m launch.tpu_pod delete --name NAME --zone ZONE [--dry-run]
    python -m launch.tpu_pod all    --name NAME --zone ZONE --accelerator_type v4-32 --bucket BUCKET \
        [--delete_after] [--dry-run] -- ENTRY_POINT_ARGS

Every subcommand takes --name, --zone, --project (optional), --accelerator_type,
--runtime_version (default tpu-ubuntu2204-base), --spot and --dry-run.

create   reuses the slice if `tpu-vm describe` finds it, otherwise creates it. --dry-run prints
         this as one shell line: `gcloud ... describe ... > /dev/null 2>&1 || gcloud ... create ...`.
setup    on every worker: installs gcsfuse (from Google's apt repository) and Python 3.11, mounts
         --bucket at --mount with `gcsfuse --implicit-dirs`; then ships `git archive HEAD` of this
         checkout (committed files only) to ~/macl-jax on every worker and runs
         `bash launch/setup.sh tpu` there. Safe to repeat: the venv in ~/macl-jax/.venv is reused.
run      runs `cd ~/macl-jax && .venv/bin/python -m macl_jax.main ENTRY_POINT_ARGS` on every worker.
         Give a --workdir under the mount (e.g. /mnt/gcs/runs/exp1): every worker then sees the same
         checkpoints, and they land in Cloud Storage; data paths under the mount are read from it
         too. jax.distributed finds the other workers of the slice itself: no MACL_* variables.
delete   deletes the slice (only this subcommand, or `all --delete_after`, ever deletes).
all      create (or reuse) + setup + run; with --delete_after the slice is deleted at the end,
         also when a step failed.

Commands run from the repository root, one after the other; the first failure stops the rest.
--dry-run prints them, one per line, and runs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from launch.local import check_main_args, split_main_args

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REMOTE_DIR = "~/macl-jax"
REMOTE_ARCHIVE = "~/macl-jax.tar.gz"
GCSFUSE_KEY = "https://packages.cloud.google.com/apt/doc/apt-key.gpg"
GCSFUSE_KEYRING = "/usr/share/keyrings/cloud.google.asc"


@dataclasses.dataclass(frozen=True)
class Step:
    """One command. With `unless`, the command runs only when `unless` fails (create or reuse)."""

    what: str
    argv: list[str]
    unless: list[str] | None = None

    def shell(self) -> str:
        line = shlex.join(self.argv)
        return f"{shlex.join(self.unless)} > /dev/null 2>&1 || {line}" if self.unless else line


def _where(args: argparse.Namespace) -> list[str]:
    return [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])


def _tpu(verb: str, args: argparse.Namespace) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, args.name, *_where(args)]


def _ssh_all(args: argparse.Namespace, command: str) -> list[str]:
    return [*_tpu("ssh", args), "--worker=all", f"--command={command}"]


def archive_path(name: str) -> str:
    """Where `git archive` writes the code for slice `name` (fixed, so that --dry-run shows it)."""
    return os.path.join(tempfile.gettempdir(), f"macl-jax-{name}.tar.gz")


def create_steps(args: argparse.Namespace) -> list[Step]:
    create = [*_tpu("create", args), f"--accelerator-type={args.accelerator_type}", f"--version={args.runtime_version}"]
    if args.spot:
        create.append("--spot")
    return [Step(f"create TPU {args.name}", create, unless=_tpu("describe", args))]


def install_and_mount_script(bucket: str, mount: str) -> str:
    """Remote shell line: gcsfuse and Python 3.11 from apt, then the bucket mounted (once)."""
    # A fresh VM runs unattended-upgrades at boot: wait for the dpkg lock instead of failing on it.
    apt = "sudo DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600"
    repo = f"deb [signed-by={GCSFUSE_KEYRING}] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main"
    m, b = shlex.quote(mount), shlex.quote(bucket)
    return " && ".join(
        [
            f"curl -fsSL {GCSFUSE_KEY} | sudo tee {GCSFUSE_KEYRING} > /dev/null",
            f'echo "{repo}" | sudo tee /etc/apt/sources.list.d/gcsfuse.list > /dev/null',
            f"{apt} update",
            # launch/setup.sh needs Python >= 3.11; Ubuntu 22.04 images bring 3.10.
            f"{apt} install -y gcsfuse python3.11 python3.11-venv",
            f"sudo mkdir -p {m}",
            f'sudo chown "$(id -u):$(id -g)" {m}',
            f"{{ mountpoint -q {m} || gcsfuse --implicit-dirs {b} {m}; }}",
        ]
    )


def setup_steps(args: argparse.Namespace) -> list[Step]:
    archive = archive_path(args.name)
    # Untar over the old tree rather than deleting it: ~/macl-jax/.venv stays and setup.sh reuses it.
    install = f"mkdir -p {REMOTE_DIR} && tar -xzf {REMOTE_ARCHIVE} -C {REMOTE_DIR} && cd {REMOTE_DIR} && bash launch/setup.sh tpu"
    return [
        Step("install gcsfuse and mount the bucket", _ssh_all(args, install_and_mount_script(args.bucket, args.mount))),
        Step("archive the code (git archive HEAD)", ["git", "archive", "--format=tar.gz", "-o", archive, "HEAD"]),
        Step(
            "copy the code to the workers",
            ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive, f"{args.name}:{REMOTE_ARCHIVE}", "--worker=all", *_where(args)],
        ),
        Step("unpack the code and install it (launch/setup.sh tpu)", _ssh_all(args, install)),
    ]


def run_steps(args: argparse.Namespace) -> list[Step]:
    command = f"cd {REMOTE_DIR} && .venv/bin/python -m macl_jax.main {shlex.join(args.main_args)}"
    return [Step("run macl_jax.main on every worker", _ssh_all(args, command))]


def delete_steps(args: argparse.Namespace) -> list[Step]:
    return [Step(f"delete TPU {args.name}", [*_tpu("delete", args), "--quiet"])]


def plan(args: argparse.Namespace) -> tuple[list[Step], list[Step]]:
    """(steps, steps that run at the end even after a failure) for the subcommand in `args`."""
    if args.command == "create":
        return create_steps(args), []
    if args.command == "setup":
        return setup_steps(args), []
    if args.command == "run":
        return run_steps(args), []
    if args.command == "delete":
        return delete_steps(args), []
    steps = create_steps(args) + setup_steps(args) + run_steps(args)
    return steps, delete_steps(args) if args.delete_after else []


def _execute(step: Step) -> None:
    if step.unless is not None:
        found = subprocess.run(step.unless, cwd=REPO_ROOT, capture_output=True, text=True)
        if found.returncode == 0:
            print(f"tpu_pod: {step.what}: it exists already, reusing it", flush=True)
            return
    print(f"tpu_pod: {step.what}: {step.shell()}", flush=True)
    subprocess.run(step.argv, cwd=REPO_ROOT, check=True)


def execute(steps: list[Step], final: list[Step]) -> int:
    """Runs `steps` until one fails, then `final` regardless; returns the first non-zero status."""
    missing = sorted({s.argv[0] for s in steps + final if shutil.which(s.argv[0]) is None})
    if missing:
        print(
            f"tpu_pod: {', '.join(missing)} not found on PATH: install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install) and git, or use --dry-run to see the commands",
            file=sys.stderr,
        )
        return 127
    status = 0
    try:
        for step in steps:
            _execute(step)
    except subprocess.CalledProcessError as exc:
        status = exc.returncode or 1
        print(f"tpu_pod: failed (exit {exc.returncode}) at step '{step.what}': {step.shell()}", file=sys.stderr)
    except KeyboardInterrupt:
        status = 130
        print(f"tpu_pod: interrupted at step '{step.what}'", file=sys.stderr)
    finally:
        for step in final:
            try:
                _execute(step)
            except subprocess.CalledProcessError as exc:
                status = status or exc.returncode or 1
                print(f"tpu_pod: failed (exit {exc.returncode}) at step '{step.what}': {step.shell()}", file=sys.stderr)
    return status


def _warn_uncommitted() -> None:
    """`git archive HEAD` ships commits only: say so when tracked files have local changes."""
    if shutil.which("git") is None:
        return  # execute() reports the missing git
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if changed.returncode == 0 and changed.stdout.strip():
        print("tpu_pod: warning: uncommitted changes are not shipped (git archive HEAD); commit them first", file=sys.stderr)


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rejects malformed arguments before anything runs, naming the argument and the fix."""
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", args.name):
        parser.error(f"argument --name: {args.name!r} must be lowercase letters, digits and hyphens, starting with a letter")
    if not re.fullmatch(r"[a-z]+-[a-z]+[0-9]+-[a-z]", args.zone):
        parser.error(f"argument --zone: {args.zone!r} is not a zone name like us-central2-b or europe-west4-a")
    if args.command in ("create", "all"):
        if not args.accelerator_type:
            parser.error(f"argument --accelerator_type: required by {args.command}, e.g. --accelerator_type v4-32")
        if not re.fullmatch(r"v[0-9]+[a-z]*-[0-9]+", args.accelerator_type):
            parser.error(f"argument --accelerator_type: {args.accelerator_type!r} is not a TPU type like v4-32 or v5litepod-16")
    if args.command in ("setup", "all"):
        args.bucket = args.bucket.removeprefix("gs://").rstrip("/")
        if not re.fullmatch(r"[a-z0-9][-_.a-z0-9]*[a-z0-9]", args.bucket):
            parser.error(f"argument --bucket: give a bucket name, e.g. my-bucket or gs://my-bucket (got {args.bucket!r})")
    if args.command in ("setup", "run", "all") and not os.path.isabs(args.mount):
        parser.error(f"argument --mount: must be an absolute path, e.g. /mnt/gcs (got {args.mount!r})")
    if args.command in ("run", "all"):
        workdir = check_main_args(parser, args.main_args)
        mount = args.mount.rstrip("/") + "/"
        if not os.path.normpath(workdir).startswith(mount):
            print(
                f"tpu_pod: warning: --workdir {workdir} is outside the gcsfuse mount {args.mount}: on a slice with "
                f"several workers each writes its own copy; use e.g. {mount}runs/exp1",
                file=sys.stderr,
            )
    elif args.main_args:
        parser.error(f"{args.command} takes no entry point arguments (found {shlex.join(args.main_args)!r} after --)")


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", required=True, help="TPU VM (slice) name")
    common.add_argument("--zone", required=True, help="e.g. us-central2-b")
    common.add_argument("--project", default=None, help="default: gcloud's configured project")
    common.add_argument("--accelerator_type", default=None, help="e.g. v4-32, v5litepod-16 (create, all)")
    common.add_argument("--runtime_version", default="tpu-ubuntu2204-base", help="TPU VM image (create, all)")
    common.add_argument("--spot", action="store_true", help="create a Spot slice (create, all)")
    common.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--mount", default="/mnt/gcs", help="where the bucket is mounted on every worker")
    bucket = argparse.ArgumentParser(add_help=False)
    bucket.add_argument("--bucket", required=True, help="Cloud Storage bucket to mount, e.g. my-bucket")

    parser = argparse.ArgumentParser(
        prog="python -m launch.tpu_pod", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{create,setup,run,delete,all}")
    entry = " -- ENTRY_POINT_ARGS"
    subparsers = {
        "create": sub.add_parser("create", parents=[common], help="create the slice unless it exists"),
        "setup": sub.add_parser("setup", parents=[common, bucket, storage], help="gcsfuse mount, code, install"),
        "run": sub.add_parser("run", parents=[common, storage], help="run macl_jax.main on every worker"),
        "delete": sub.add_parser("delete", parents=[common], help="delete the slice"),
        "all": sub.add_parser("all", parents=[common, bucket, storage], help="create + setup + run"),
    }
    subparsers["all"].add_argument("--delete_after", action="store_true", help="delete the slice at the end, also on failure")
    for name in ("run", "all"):
        subparsers[name].usage = subparsers[name].format_usage().removeprefix("usage: ").rstrip() + entry

    own, main_args = split_main_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    args.main_args = main_args
    _check(subparsers[args.command], args)
    steps, final = plan(args)
    if args.dry_run:
        for step in steps + final:
            print(step.shell())
        return 0
    if args.command in ("setup", "all"):
        _warn_uncommitted()
    return execute(steps, final)


if __name__ == "__main__":
    sys.exit(main())
