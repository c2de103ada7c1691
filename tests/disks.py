"""Small and read-only file systems for the tests of full and read-only disks.

A tmpfs is mounted where that is allowed (root, as in CI and in this sandbox). A read-only
folder can also be made by permissions when the tests do not run as root (root ignores them);
a full disk cannot, and its test is then skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["read_only_folder", "small_disk"]


def _mount(path: Path, options: str) -> str | None:
    """Mount a tmpfs at `path`; the reason it could not be, or None."""
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except OSError as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or "mount failed")


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


@contextlib.contextmanager
def small_disk(path: Path, *, kilobytes: int) -> Iterator[Path]:
    """A file system of `kilobytes` at `path` (a new folder): writing more fails with ENOSPC."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("a small file system is mounted as root only")
    problem = _mount(path, f"size={kilobytes}k,mode=0777")
    if problem is not None:
        pytest.skip(f"cannot mount a tmpfs here: {problem}")
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder at `path` in which nothing can be created (EROFS as root, EACCES otherwise)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    problem = _mount(path, "ro,size=64k")
    if problem is not None:
        pytest.skip(f"cannot mount a read-only tmpfs here: {problem}")
    try:
        yield path
    finally:
        _unmount(path)
