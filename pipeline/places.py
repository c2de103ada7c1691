"""The places a render writes, checked before any work is done: the video and the data
folder. A folder given where a file belongs, a read-only disk or a missing permission is then
one line at once, not a traceback after the whole render."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from .errors import ConfigError, InputError

__all__ = ["check_data_dir", "check_output", "os_reason"]


def os_reason(error: OSError) -> str:
    """What went wrong, in the system's words ("No space left on device"), without a path."""
    return error.strerror or str(error) or type(error).__name__


def check_output(path: Path, *, what: str) -> Path:
    """`path` can be written as a file: it is not a folder, and its folder (made if missing)
    takes a new file. Raises InputError saying which."""
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; name a file, e.g. {path / 'video.mp4'}")
    if path.exists() and not path.is_file():
        raise InputError(f"{what} {path} is not a regular file; name a file to write")
    parent = _existing_ancestor(path.parent)
    if not parent.is_dir():
        raise InputError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    try:
        _probe(path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {what} {path}: {os_reason(exc)}") from None
    return path


def check_data_dir(path: Path) -> None:
    """The data folder ([storage] data_dir) exists, or can be made, and takes new files."""
    try:
        _probe(path)
    except OSError as exc:
        raise ConfigError(
            f"the data folder {path} ([storage] data_dir) cannot be written: {os_reason(exc)}"
        ) from None


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path) -> None:
    """Make `folder` if needed, then create and remove a file in it: the only test that also
    holds for root (who ignores permission bits, but not a read-only file system)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".reelbot-probe-{uuid.uuid4().hex[:8]}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()
