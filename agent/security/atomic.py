"""Crash-safe file replacement: write a temporary file, fsync it, rename it over the old one,
fsync the directory. A crash at any point leaves either the old or the new file, never a mix."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

Rename = Callable[[Path, Path], None]
TEMP_SUFFIX = ".tmp"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o600, rename: Rename = os.replace
) -> None:
    """Replace `path` with `data`. `rename` is injectable so tests can crash right before it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)  # O_CREAT's mode is filtered by the umask
        rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_directory(path.parent)


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files a crashed writer left next to `path` (they are never read)."""
    for stale in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
