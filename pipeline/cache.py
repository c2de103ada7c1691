"""Content-addressed artifacts: a file's name is the hash of everything that made it.

A finished artifact is written under a temporary name and renamed, so a file that exists
under its final name is complete. Re-rendering an unchanged scene, or resuming after a crash,
finds its artifacts here instead of making them again.

Pins: a caller marks the artifacts a job still needs (a scene's own media while the job is
queued, running or in review) as pinned by that job, and `evict` leaves them whatever their
age. A pin is a small file under `<root>/.pins/`, so it holds across processes and restarts;
one made with a process id (the CLI's) ends with that process, even if it crashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

__all__ = ["ArtifactCache", "CachePin", "content_key"]

log = logging.getLogger(__name__)
PINS = ".pins"
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def content_key(kind: str, **fields: Any) -> str:
    blob = json.dumps({"kind": kind, **fields}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def lookup(self, kind: str, key: str, suffix: str | tuple[str, ...]) -> Path | None:
        """The artifact, if it exists (under any of the suffixes given)."""
        for one in (suffix,) if isinstance(suffix, str) else suffix:
            path = self.path(kind, key, one)
            if path.is_file() and path.stat().st_size > 0:
                os.utime(path)  # recently used: last to be evicted
                return path
        return None

    def size(self) -> int:
        return sum(f.stat().st_size for f in self._files())

    def evict(self, max_bytes: int, *, keep: Iterable[Path] = ()) -> list[Path]:
        """Remove least recently used artifacts until the cache holds at most `max_bytes`,
        never a pinned one nor one of `keep` (resolved paths; both still count towards the
        size). Call it when no render is running, or keep what the running ones need."""
        keep = self.pinned() | set(keep)
        entries = sorted(((f.stat(), f) for f in self._files()), key=lambda e: e[0].st_mtime)
        total = sum(stat.st_size for stat, _ in entries)
        removed: list[Path] = []
        for stat, path in entries:
            if total <= max_bytes:
                break
            if path.resolve() in keep:
                continue
            path.unlink(missing_ok=True)
            total -= stat.st_size
            removed.append(path)
        return removed

    # ------------------------------------------------------------ files from outside

    def scratch(self, kind: str) -> Path:
        """A fresh temporary name in `kind`'s folder (not an artifact: `size` and `evict`
        never see it); the caller writes it, then `put_file`s or removes it."""
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{uuid.uuid4().hex}.part"

    def put_file(self, temp: Path, kind: str, key: str, suffix: str) -> Path:
        """Move a finished file into the cache as `kind`/`key``suffix`; one already there
        (the same content, by its key) is kept, and marked as just used."""
        final = self.path(kind, key, suffix)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_file() and final.stat().st_size > 0:
            os.utime(final)
            temp.unlink(missing_ok=True)
        else:
            temp.replace(final)
        return final

    # ------------------------------------------------------------ pins

    def pin(self, owner: str, paths: Iterable[Path], *, pid: int | None = None) -> None:
        """Mark `paths` (artifacts of this cache) as in use by `owner` ("job-12"), adding to
        what it pinned before; `evict` leaves them until `unpin(owner)`. With `pid`, the pin
        ends when that process does."""
        if not _OWNER.match(owner):
            raise ValueError(f"a pin owner is letters, digits, '.', '_' or '-', not {owner!r}")
        file = self.root / PINS / f"{owner}.json"
        held = self._pin_file(file)
        names = set(held[1]) if held is not None else set()
        for path in paths:
            relative = path.resolve().relative_to(self.root.resolve())  # ValueError: not ours
            names.add(relative.as_posix())
        file.parent.mkdir(parents=True, exist_ok=True)
        temp = file.with_name(f".{file.name}.{uuid.uuid4().hex[:8]}")
        temp.write_text(json.dumps({"pid": pid, "paths": sorted(names)}), encoding="utf-8")
        temp.replace(file)

    def unpin(self, owner: str) -> None:
        """`owner` needs none of its artifacts any more."""
        if _OWNER.match(owner):
            (self.root / PINS / f"{owner}.json").unlink(missing_ok=True)

    def pinned(self) -> set[Path]:
        """Every artifact some live pin holds (a pin whose process has ended is removed)."""
        folder = self.root / PINS
        if not folder.is_dir():
            return set()
        found: set[Path] = set()
        root = self.root.resolve()
        for file in folder.glob("*.json"):
            held = self._pin_file(file)
            if held is None:
                continue
            pid, names = held
            if pid is not None and not _alive(pid):
                log.info("removing the pin %s: its process %d has ended", file.stem, pid)
                file.unlink(missing_ok=True)
                continue
            found.update(root / name for name in names)
        return found

    @contextmanager
    def pinning(self, owner: str | None = None) -> Iterator[CachePin]:
        """Pins held while the block runs (by this process), removed at its end."""
        pin = CachePin(self, owner or f"process-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            yield pin
        finally:
            self.unpin(pin.owner)

    def _pin_file(self, file: Path) -> tuple[int | None, list[str]] | None:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            pid = data.get("pid")
            return (int(pid) if pid is not None else None), [str(n) for n in data["paths"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            # Pins are written whole (renamed into place): this is no pin of ours.
            log.warning("the pin file %s cannot be read; it is left alone", file)
            return None

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*/*/*") if p.is_file() and not p.name.startswith(".")
                and not p.parent.parent.name.startswith(".")]  # fmt: skip

    @asynccontextmanager
    async def writing(
        self, kind: str, key: str, suffix: str | Callable[[Path], str]
    ) -> AsyncIterator[Path]:
        """Yield a temporary path to write; on success it becomes the artifact atomically.
        `suffix` may be a function of the written file (a picture named for its real type)."""
        folder = self.path(kind, key, "").parent
        folder.mkdir(parents=True, exist_ok=True)
        temp_suffix = suffix if isinstance(suffix, str) else ".bin"
        temp = folder / f".{key}.{uuid.uuid4().hex[:8]}.part{temp_suffix}"
        try:
            yield temp
            if not temp.is_file() or temp.stat().st_size == 0:
                raise FileNotFoundError(f"nothing was written to {temp.name}")
            final = self.path(kind, key, suffix if isinstance(suffix, str) else suffix(temp))
            temp.replace(final)
        finally:
            temp.unlink(missing_ok=True)


class CachePin:
    """One owner's pins, added to as artifacts come in; this process's while it lives."""

    def __init__(self, cache: ArtifactCache, owner: str) -> None:
        self.cache = cache
        self.owner = owner

    def add(self, *paths: Path) -> None:
        self.cache.pin(self.owner, paths, pid=os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
