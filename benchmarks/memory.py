"""Resident memory of a child process, sampled from outside while it runs.

A process's peak RSS (`ru_maxrss`) only says how high it ever got: growth that stays under the
start-up peak (imports, JAX compilation, dlib's face detector) does not show in it. `run_sampled`
reads the child's VmRSS from /proc every `interval` seconds and, when the child draws a progress
bar on stderr (tqdm), notes the count the bar showed at each sample, so memory can be read against
the work done (frames written) rather than against time, which a busy machine stretches.

Linux only (/proc); no dependency beyond numpy and no JAX import, so tests can use it too.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

# tqdm's default bar: "desc:  12%|#2        | 60/500 [00:01<00:07, 55.2frame/s]".
TQDM_COUNT = r"(\d+)/\d+ \["


@dataclasses.dataclass(frozen=True)
class RssTrace:
    """One sampled run: per sample the time since start, VmRSS and the child's last reported count."""

    seconds: np.ndarray  # float64 (N,)
    rss_mib: np.ndarray  # float64 (N,)
    progress: np.ndarray  # int64 (N,): the last count on stderr when the sample was taken; -1 before any
    returncode: int
    stdout: str
    stderr: str

    def after(self, count: int) -> np.ndarray:
        """RSS (MiB) of the samples taken once the child had reported at least `count`."""
        return self.rss_mib[self.progress >= count]


def rss_mib(pid: int) -> float | None:
    """VmRSS of a live process in MiB; None once it has exited (or is a zombie without memory)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def run_sampled(
    cmd: Sequence[str],
    *,
    interval: float = 0.05,
    progress_pattern: str | None = TQDM_COUNT,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
) -> RssTrace:
    """Runs `cmd` to completion, sampling its resident memory every `interval` seconds.

    Only the child itself is measured, not processes it starts. `progress_pattern` is a regex whose
    first group is an integer count, searched in the child's stderr (tqdm redraws with carriage
    returns, so stderr is read as it comes, not by lines). Raises TimeoutError (after killing the
    child) if it runs longer than `timeout`.
    """
    if not Path("/proc/self/status").is_file():
        raise RuntimeError("run_sampled reads /proc/<pid>/status; this system has no /proc")
    pattern = re.compile(progress_pattern) if progress_pattern else None
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks: list[bytes] = []
    err_chunks: list[str] = []
    count = [-1]  # written by the stderr reader, read by the sampler

    def read_stdout() -> None:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            out_chunks.append(chunk)

    def read_stderr() -> None:
        tail = ""
        while chunk := os.read(proc.stderr.fileno(), 65536):
            text = chunk.decode(errors="replace")
            err_chunks.append(text)
            if pattern:
                tail = (tail + text)[-4096:]
                matches = pattern.findall(tail)
                if matches:
                    last = matches[-1]
                    count[0] = max(count[0], int(last[0] if isinstance(last, tuple) else last))

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    start = time.perf_counter()
    seconds, rss, progress = [], [], []
    try:
        while proc.poll() is None:
            now = time.perf_counter() - start
            if now > timeout:
                raise TimeoutError(f"{cmd[:4]}... ran past {timeout:.0f} s")
            value = rss_mib(proc.pid)
            if value is not None and value > 0:
                seconds.append(now)
                rss.append(value)
                progress.append(count[0])
            time.sleep(interval)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for reader in readers:
            reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    return RssTrace(
        np.asarray(seconds, np.float64), np.asarray(rss, np.float64), np.asarray(progress, np.int64),
        proc.returncode, b"".join(out_chunks).decode(errors="replace"), "".join(err_chunks),
    )
