"""What people attach and the bot keeps: music for `/render music:`, saved in the artifact cache
under its content's hash (`<data_dir>/cache/music/<xx>/<sha256>.<ext>`, never a name the user
chose), so the cache's size cap covers it too. `[storage] keep_days` removes music no job uses
(`bot/retention.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

from pipeline.cache import ArtifactCache
from pipeline.errors import MediaError, ReelbotError
from pipeline.media import probe

__all__ = ["keep_music", "save_music"]


def save_music(data: bytes, cache: ArtifactCache, suffix: str) -> tuple[Path, bool]:
    """Keep `data` in the artifact cache under its sha256, written under a temporary name, then
    renamed; the path, and whether it was written now (False: it was there already)."""
    path = cache.path("music", hashlib.sha256(data).hexdigest(), suffix)
    if path.is_file() and path.stat().st_size == len(data):
        return path, False
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        temp.write_bytes(data)
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)
    return path, True


async def keep_music(data: bytes, cache: ArtifactCache, suffix: str, *, name: str) -> Path:
    """Save uploaded music (off the event loop) and check it with ffprobe: a file with no audio
    in it is refused, naming it as `name`, and not kept."""
    path, fresh = await asyncio.to_thread(save_music, data, cache, suffix)
    try:
        info = await probe(path)
    except MediaError:
        info = None
    if info is None or info.stream("audio") is None or info.duration <= 0:
        if fresh:
            path.unlink(missing_ok=True)
        raise ReelbotError(f"{name} holds no audio I can play; attach another music file")
    return path
