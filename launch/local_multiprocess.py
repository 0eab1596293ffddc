"""Runs N processes of the entry point on this machine, joined as one JAX job.

    python -m launch.local_multiprocess --num_processes 2 [--devices_per_process 1] [--dry-run] -- \
        --config configs/smoke.py:tiny --workdir runs/mp

Each process gets `MACL_COORDINATOR_ADDRESS`, `MACL_NUM_PROCESSES`, `MACL_PROCESS_ID` and its
own share of CPU devices; its output is prefixed with `[pI]`. The exit status is the first
non-zero status of any process (all others are then stopped).
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(num_processes: int, devices_per_process: int, port: int, main_args: list[str]) -> list[tuple[dict, list[str]]]:
    """(environment additions, argv) for each process."""
    out = []
    for i in range(num_processes):
        env = {
            "MACL_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "MACL_NUM_PROCESSES": str(num_processes),
            "MACL_PROCESS_ID": str(i),
            "JAX_PLATFORMS": "cpu",
        }
        argv = [sys.executable, "-m", "macl_jax.main", *main_args, f"--config.runtime.num_cpu_devices={devices_per_process}"]
        out.append((env, argv))
    return out


def _pump(stream, prefix: str, sink) -> None:
    for line in stream:
        sink.write(f"{prefix} {line}")
        sink.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1)
    parser.add_argument("--port", type=int, default=0, help="coordinator port (0: pick a free one)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    parser.add_argument("main_args", nargs=argparse.REMAINDER, help="arguments for macl_jax.main, after --")
    args = parser.parse_args(argv)
    main_args = args.main_args[1:] if args.main_args[:1] == ["--"] else args.main_args
    plan = commands(args.num_processes, args.devices_per_process, args.port or free_port(), main_args)
    if args.dry_run:
        for env, cmd in plan:
            print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(cmd))
        return 0
    env_base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs, pumps = [], []
    for i, (env, cmd) in enumerate(plan):
        proc = subprocess.Popen(cmd, env={**env_base, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        pumps.append(threading.Thread(target=_pump, args=(proc.stdout, f"[p{i}]", sys.stdout), daemon=True))
        pumps[-1].start()
    status = 0
    try:
        remaining = list(procs)
        while remaining:
            for proc in list(remaining):
                try:
                    code = proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                remaining.remove(proc)
                if code != 0 and status == 0:
                    status = code if code > 0 else 128 - code
                    for other in remaining:  # a lone survivor would wait for its peers forever
                        other.terminate()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for pump in pumps:
            pump.join(timeout=5)
    return status


if __name__ == "__main__":
    sys.exit(main())
