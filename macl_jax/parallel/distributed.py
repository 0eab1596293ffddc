"""Multi-process start-up: one call that does the right thing on every platform.

* Cloud TPU VMs (TPU chips on the PCI bus; pod slices, GKE) and SLURM jobs with several tasks:
  `jax.distributed.initialize()` without arguments, which reads the TPU metadata or the SLURM
  environment itself.
* Generic clusters and local multi-process runs: the coordinator address, process count and
  process id come from the config or from `MACL_COORDINATOR_ADDRESS`, `MACL_NUM_PROCESSES`,
  `MACL_PROCESS_ID` (the JAX spellings `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID` are accepted too).
* One process: nothing to do.

Must run before anything touches a JAX backend (device queries included).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import jax
from absl import logging

_initialized = False


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How this process joins a job. `kind` is one of: single, explicit, tpu, slurm."""

    kind: str
    coordinator_address: str | None = None
    num_processes: int = 1
    process_id: int = 0


def _env_first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return value
    return None


def on_cloud_tpu_vm() -> bool:
    """True on a Cloud TPU VM: TPU chips on the PCI bus (no network query, no backend start)."""
    try:
        from jax._src import hardware_utils  # private, but the same check JAX's TPU start-up uses

        chips, _ = hardware_utils.num_available_tpu_chips_and_device_id()
        return chips > 0
    except Exception:  # noqa: BLE001 - absent or changed internals: not a TPU VM as far as we know
        return False


def detect_cluster(
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    env: Mapping[str, str] | None = None,
    tpu_vm: bool | None = None,
) -> ClusterSpec:
    """Decides how to initialise from explicit settings first, then the environment."""
    env = os.environ if env is None else env
    address = coordinator_address or _env_first(env, "MACL_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS")
    count = num_processes or int(_env_first(env, "MACL_NUM_PROCESSES", "JAX_NUM_PROCESSES") or 0)
    pid = process_id if process_id >= 0 else int(_env_first(env, "MACL_PROCESS_ID", "JAX_PROCESS_ID") or -1)
    if address or count > 1:
        missing = [
            name
            for name, ok in (("coordinator address", bool(address)), ("process count", count >= 1), ("process id", pid >= 0))
            if not ok
        ]
        if missing:
            raise ValueError(
                "incomplete multi-process settings: missing "
                + ", ".join(missing)
                + ". Set MACL_COORDINATOR_ADDRESS=host:port, MACL_NUM_PROCESSES=N and MACL_PROCESS_ID=i "
                "(or --config.runtime.distributed.*) on every process."
            )
        if not 0 <= pid < count:
            raise ValueError(f"process id {pid} is outside [0, {count}); check MACL_PROCESS_ID / MACL_NUM_PROCESSES")
        return ClusterSpec("explicit", address, count, pid)
    # A multi-host TPU slice lists all its workers; a single host has one (or no) entry.
    tpu_hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    if len([h for h in tpu_hosts.split(",") if h]) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return ClusterSpec("tpu")
    # On Cloud TPU VMs the worker list lives in the GCE metadata, not in the environment; JAX's
    # initialize() reads it (and on a single-host slice it yields one process).
    if (on_cloud_tpu_vm() if tpu_vm is None else tpu_vm) and env.get("TPU_SKIP_MDS_QUERY") is None:
        return ClusterSpec("tpu")
    if env.get("SLURM_JOB_ID") and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return ClusterSpec("slurm", num_processes=int(env["SLURM_NTASKS"]), process_id=int(env.get("SLURM_PROCID", 0)))
    return ClusterSpec("single")


def initialize(
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    *,
    num_cpu_devices: int = 0,
    initialization_timeout_s: int = 300,
) -> ClusterSpec:
    """Joins the job described by the settings/environment; a no-op for a single process.

    `num_cpu_devices > 0` splits the host CPU into that many XLA devices (tests, laptops).
    """
    global _initialized
    spec = detect_cluster(coordinator_address, num_processes, process_id)
    if num_cpu_devices > 0:
        jax.config.update("jax_num_cpu_devices", num_cpu_devices)
    if _initialized or spec.kind == "single":
        return spec
    logging.info("joining a %s job: %s", spec.kind, spec)
    if spec.kind == "explicit":
        jax.distributed.initialize(
            coordinator_address=spec.coordinator_address,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
            initialization_timeout=initialization_timeout_s,
        )
    else:
        jax.distributed.initialize(initialization_timeout=initialization_timeout_s)
    _initialized = True
    return spec


def is_initialized() -> bool:
    """True once this process has joined a multi-process job through `initialize`."""
    return _initialized
