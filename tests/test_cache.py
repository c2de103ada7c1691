from __future__ import annotations

import os
from pathlib import Path

from pipeline.cache import ArtifactCache, content_key


async def put(cache: ArtifactCache, kind: str, key: str, size: int, mtime: float) -> Path:
    async with cache.writing(kind, key, ".bin") as temp:
        temp.write_bytes(b"x" * size)
    path = cache.path(kind, key, ".bin")
    os.utime(path, (mtime, mtime))
    return path


def test_keys_depend_on_every_field() -> None:
    base = content_key("image", prompt="a", seed=1)
    assert base == content_key("image", seed=1, prompt="a")
    assert base != content_key("image", prompt="a", seed=2)
    assert base != content_key("audio", prompt="a", seed=1)


async def test_eviction_removes_least_recently_used_first(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    old = await put(cache, "image", "a" * 32, 400, 1_000)
    middle = await put(cache, "audio", "b" * 32, 400, 2_000)
    new = await put(cache, "clip", "c" * 32, 400, 3_000)
    # Using the oldest makes it the most recently used.
    assert cache.lookup("image", "a" * 32, ".bin") == old
    assert cache.size() == 1200
    removed = cache.evict(900)
    assert removed == [middle]
    assert old.exists() and new.exists() and not middle.exists()
    assert cache.size() == 800
    assert cache.lookup("audio", "b" * 32, ".bin") is None


async def test_eviction_keeps_what_it_is_told_to_keep(tmp_path: Path) -> None:
    """The bot of `[queue] backend = "arq"` evicts while workers render: the artifacts of its
    active jobs are kept however old."""
    cache = ArtifactCache(tmp_path)
    oldest = await put(cache, "image", "a" * 32, 400, 1_000)
    middle = await put(cache, "audio", "b" * 32, 400, 2_000)
    new = await put(cache, "clip", "c" * 32, 400, 3_000)
    removed = cache.evict(500, keep={oldest.resolve()})
    assert removed == [middle, new]
    assert oldest.exists() and cache.size() == 400


async def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    try:
        async with cache.writing("image", "d" * 32, ".png") as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    except RuntimeError:
        pass
    assert cache.lookup("image", "d" * 32, ".png") is None
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
