"""Content-addressed artifacts: a file's name is the hash of everything that made it.

A finished artifact is written under a temporary name and renamed, so a file that exists
under its final name is complete. Re-rendering an unchanged scene, or resuming after a crash,
finds its artifacts here instead of making them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

__all__ = ["ArtifactCache", "content_key"]


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

    def evict(self, max_bytes: int) -> list[Path]:
        """Remove least recently used artifacts until the cache holds at most `max_bytes`.
        Call it when no render is running: a running render may still need its files."""
        entries = sorted(((f.stat(), f) for f in self._files()), key=lambda e: e[0].st_mtime)
        total = sum(stat.st_size for stat, _ in entries)
        removed: list[Path] = []
        for stat, path in entries:
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= stat.st_size
            removed.append(path)
        return removed

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.glob("*/*/*") if p.is_file() and not p.name.startswith(".")]

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
