"""The launchers' --dry-run output, line for line, and their argument errors.

Nothing here needs gcloud or sbatch: --dry-run only prints.
"""

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PY = shlex.quote(sys.executable)
ENTRY = ["--config", "configs/smoke.py:tiny", "--workdir", "/mnt/gcs/runs/exp1"]
TPU = ["--name", "exp1-pod", "--zone", "us-central2-b"]


def launch(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"launch.{name}", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def dry_run(name: str, *args: str) -> list[str]:
    proc = launch(name, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def fails(name: str, *args: str) -> str:
    """stderr of a --dry-run that must fail (--dry-run goes before any `--`)."""
    args = list(args)
    args.insert(args.index("--") if "--" in args else len(args), "--dry-run")
    proc = launch(name, *args)
    assert proc.returncode != 0 and proc.stdout == "", (proc.returncode, proc.stdout)
    return proc.stderr


# --- launch.local ------------------------------------------------------------------------------


def test_local_plain():
    assert dry_run("local", "--dry-run", "--", *ENTRY) == [
        f"{PY} -m macl_jax.main --config configs/smoke.py:tiny --workdir /mnt/gcs/runs/exp1"
    ]


def test_local_all_options():
    out = dry_run(
        "local", "--num_cpu_devices", "4", "--gpu_mem_fraction", "0.5", "--no_preallocate",
        "--compilation_cache", "/tmp/xla cache", "--dry-run", "--", *ENTRY, "--config.train.num_steps=3",
    )  # fmt: skip
    assert out == [
        "XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 XLA_PYTHON_CLIENT_PREALLOCATE=false "
        f"{PY} -m macl_jax.main --config configs/smoke.py:tiny --workdir /mnt/gcs/runs/exp1 --config.train.num_steps=3 "
        "--config.runtime.num_cpu_devices=4 '--config.runtime.compilation_cache_dir=/tmp/xla cache'"
    ]


@pytest.mark.parametrize(
    "args, named",
    [
        (["--gpu_mem_fraction", "1.5"], "--gpu_mem_fraction"),
        (["--gpu_mem_fraction", "0"], "--gpu_mem_fraction"),
        (["--num_cpu_devices", "0"], "--num_cpu_devices"),
        (["--num_cpu_devices", "2", "--", "--workdir", "w", "--config.runtime.num_cpu_devices=4"], "--num_cpu_devices"),
        (["--", "--config", "configs/smoke.py:tiny"], "--workdir"),
        (["--", "--workdir", "gs://bucket/run"], "--workdir"),
        ([], "entry point arguments"),
    ],
)
def test_local_errors(args, named):
    if "--" not in args and args:
        args = [*args, "--", "--workdir", "w"]
    assert named in fails("local", *args)


# --- launch.tpu_pod ----------------------------------------------------------------------------

ARCHIVE = shlex.quote(os.path.join(tempfile.gettempdir(), "macl-jax-exp1-pod.tar.gz"))
CREATE = (
    "gcloud compute tpus tpu-vm describe exp1-pod --zone=us-central2-b > /dev/null 2>&1 || "
    "gcloud compute tpus tpu-vm create exp1-pod --zone=us-central2-b --accelerator-type=v5litepod-16 "
    "--version=tpu-ubuntu2204-base"
)
APT = "sudo DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600"
SETUP = [
    "gcloud compute tpus tpu-vm ssh exp1-pod --zone=us-central2-b --worker=all '--command="
    "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc > /dev/null"
    ' && echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt'
    ' gcsfuse-$(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list > /dev/null'
    f" && {APT} update && {APT} install -y gcsfuse python3.11 python3.11-venv"
    ' && sudo mkdir -p /mnt/gcs && sudo chown "$(id -u):$(id -g)" /mnt/gcs'
    " && { mountpoint -q /mnt/gcs || gcsfuse --implicit-dirs my-bucket /mnt/gcs; }'",
    f"git archive --format=tar.gz -o {ARCHIVE} HEAD",
    f"gcloud compute tpus tpu-vm scp {ARCHIVE} 'exp1-pod:~/macl-jax.tar.gz' --worker=all --zone=us-central2-b",
    "gcloud compute tpus tpu-vm ssh exp1-pod --zone=us-central2-b --worker=all '--command=mkdir -p ~/macl-jax"
    " && tar -xzf ~/macl-jax.tar.gz -C ~/macl-jax && cd ~/macl-jax && bash launch/setup.sh tpu'",
]
RUN = (
    "gcloud compute tpus tpu-vm ssh exp1-pod --zone=us-central2-b --worker=all '--command=cd ~/macl-jax && "
    ".venv/bin/python -m macl_jax.main --config configs/smoke.py:tiny --workdir /mnt/gcs/runs/exp1'"
)
DELETE = "gcloud compute tpus tpu-vm delete exp1-pod --zone=us-central2-b --quiet"


def test_tpu_create_with_project_and_spot():
    out = dry_run("tpu_pod", "create", *TPU, "--project", "my-proj", "--accelerator_type", "v4-32", "--spot", "--dry-run")
    assert out == [
        "gcloud compute tpus tpu-vm describe exp1-pod --zone=us-central2-b --project=my-proj > /dev/null 2>&1 || "
        "gcloud compute tpus tpu-vm create exp1-pod --zone=us-central2-b --project=my-proj --accelerator-type=v4-32 "
        "--version=tpu-ubuntu2204-base --spot"
    ]


def test_tpu_create_setup_run_delete():
    assert dry_run("tpu_pod", "create", *TPU, "--accelerator_type", "v5litepod-16", "--dry-run") == [CREATE]
    assert dry_run("tpu_pod", "setup", *TPU, "--bucket", "gs://my-bucket", "--dry-run") == SETUP
    assert dry_run("tpu_pod", "run", *TPU, "--dry-run", "--", *ENTRY) == [RUN]
    assert dry_run("tpu_pod", "delete", *TPU, "--dry-run") == [DELETE]


def test_tpu_all():
    common = [*TPU, "--accelerator_type", "v5litepod-16", "--bucket", "my-bucket", "--dry-run"]
    assert dry_run("tpu_pod", "all", *common, "--", *ENTRY) == [CREATE, *SETUP, RUN]
    assert dry_run("tpu_pod", "all", *common, "--delete_after", "--", *ENTRY) == [CREATE, *SETUP, RUN, DELETE]


def test_tpu_run_warns_about_a_workdir_outside_the_mount():
    proc = launch("tpu_pod", "run", *TPU, "--dry-run", "--", "--config", "configs/smoke.py:tiny", "--workdir", "runs/x")
    assert proc.returncode == 0 and "outside the gcsfuse mount /mnt/gcs" in proc.stderr


@pytest.mark.parametrize(
    "args, named",
    [
        (["create", "--name", "Bad_Name", "--zone", "us-central2-b", "--accelerator_type", "v4-8"], "--name"),
        (["create", "--name", "pod", "--zone", "central", "--accelerator_type", "v4-8"], "--zone"),
        (["create", *TPU], "--accelerator_type"),
        (["create", *TPU, "--accelerator_type", "tpu-big"], "--accelerator_type"),
        (["setup", *TPU], "--bucket"),
        (["setup", *TPU, "--bucket", "gs://b/some/dir"], "--bucket"),
        (["setup", *TPU, "--bucket", "b", "--mount", "gcs"], "--mount"),
        (["run", *TPU], "entry point arguments"),
        (["run", *TPU, "--", "--workdir", "gs://bucket/run"], "--workdir"),
        (["delete", *TPU, "--", "--workdir", "w"], "no entry point arguments"),
        (["resize", *TPU], "invalid choice"),
    ],
)
def test_tpu_errors(args, named):
    assert named in fails("tpu_pod", *args)


# --- launch.slurm ------------------------------------------------------------------------------


def test_slurm_per_node_with_requeue():
    out = dry_run(
        "slurm", "--nodes", "2", "--gpus_per_node", "8", "--partition", "gpu", "--time", "24:00:00",
        "--cpus_per_task", "32", "--requeue", "--dry-run", "--", "--config", "configs/smoke.py:tiny",
        "--workdir", "/shared/runs/exp1",
    )  # fmt: skip
    assert out == [
        "mkdir -p slurm",
        "cat > slurm/macl-jax.sbatch <<'EOF'",
        "#!/bin/bash",
        "#SBATCH --job-name=macl-jax",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=24:00:00",
        "#SBATCH --output=slurm/%x-%j.out",
        "#SBATCH --requeue",
        "#SBATCH --signal=TERM@120",
        "#SBATCH --open-mode=append",
        "",
        "# One task per node drives all of its GPUs (JAX alone would use GPU SLURM_LOCALID only).",
        "export JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7",
        "srun .venv/bin/python -m macl_jax.main --config configs/smoke.py:tiny --workdir /shared/runs/exp1",
        "status=$?",
        "# 143: the run saved a checkpoint on SIGTERM before the time limit; queue it again to resume.",
        'if [ "$status" -eq 143 ]; then scontrol requeue "$SLURM_JOB_ID"; fi',
        'exit "$status"',
        "EOF",
        "sbatch slurm/macl-jax.sbatch",
    ]


def test_slurm_per_gpu():
    out = dry_run(
        "slurm", "--nodes", "2", "--gpus_per_node", "4", "--mode", "per-gpu", "--job_name", "exp2",
        "--output", "logs/%j.out", "--venv", "/opt/venvs/macl", "--dry-run", "--",
        "--config", "configs/smoke.py:tiny", "--workdir", "/shared/runs/exp 2",
    )  # fmt: skip
    assert out == [
        "mkdir -p slurm logs",
        "cat > slurm/exp2.sbatch <<'EOF'",
        "#!/bin/bash",
        "#SBATCH --job-name=exp2",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --output=logs/%j.out",
        "",
        "# Each task sees only its own GPU, as device 0 (JAX alone would use GPU SLURM_LOCALID).",
        "export JAX_LOCAL_DEVICE_IDS=0",
        "srun /opt/venvs/macl/bin/python -m macl_jax.main --config configs/smoke.py:tiny --workdir '/shared/runs/exp 2'",
        "EOF",
        "sbatch slurm/exp2.sbatch",
    ]


def test_slurm_script_option_and_single_node_default():
    out = dry_run("slurm", "--gpus_per_node", "1", "--script", "job.sh", "--output", "job.log", "--dry-run", "--", "--workdir", "w")
    assert out == [
        "cat > job.sh <<'EOF'",
        "#!/bin/bash",
        "#SBATCH --job-name=macl-jax",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --output=job.log",
        "",
        "# One task per node drives all of its GPUs (JAX alone would use GPU SLURM_LOCALID only).",
        "export JAX_LOCAL_DEVICE_IDS=0",
        "srun .venv/bin/python -m macl_jax.main --workdir w",
        "EOF",
        "sbatch job.sh",
    ]


@pytest.mark.parametrize(
    "args, named",
    [
        (["--nodes", "0", "--gpus_per_node", "8"], "--nodes"),
        (["--gpus_per_node", "0"], "--gpus_per_node"),
        ([], "--gpus_per_node"),
        (["--gpus_per_node", "8", "--mode", "per-host"], "--mode"),
        (["--gpus_per_node", "8", "--cpus_per_task", "0"], "--cpus_per_task"),
        (["--gpus_per_node", "8", "--time", "1 day"], "--time"),
        (["--gpus_per_node", "8", "--job_name", "my job"], "--job_name"),
        (["--gpus_per_node", "8", "--output", "logs/%j/out.txt"], "--output"),
    ],
)
def test_slurm_errors(args, named):
    assert named in fails("slurm", *args, "--", "--workdir", "w")


def test_slurm_needs_entry_point_args():
    assert "--workdir" in fails("slurm", "--gpus_per_node", "8", "--", "--config", "configs/smoke.py:tiny")
