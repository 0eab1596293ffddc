"""Atomic file output: write to a hidden temporary file beside the target, then rename.

``os.replace`` within one directory is atomic on POSIX, so readers see either the old file or
the complete new one, never a prefix; an interrupted writer leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output"]


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:  # some filesystems refuse to open directories; durability is best-effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in ``path``'s directory; on success it replaces ``path``.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and an
    existing file at ``path`` is left as it was. Missing parent directories are created.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target}: is a directory; pass a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name with pid + random suffix: concurrent writers of the same target never share
    # a temporary file, and globbing for the target's extension does not pick it up.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{target}: the writer produced no output")
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_path(target.parent, directory=True)
