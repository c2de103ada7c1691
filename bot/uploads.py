"""What people attach and the bot keeps: music for `/render music:`, saved in the artifact cache
under its content's hash (`<data_dir>/cache/music/<xx>/<sha256>.<ext>`, never a name the user
chose), so the cache's size cap covers it too. `[storage] keep_days` removes music no job uses
(`bot/retention.py`), unless a preset names it (`bot/presets.py`). `check_music` and
`fetch_music` take an attachment (the preset music of `/settings`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

import discord

from pipeline.cache import ArtifactCache
from pipeline.errors import MediaError, ReelbotError
from pipeline.media import probe
from pipeline.soundtrack import MUSIC_SUFFIXES

from .text import format_size, plain

__all__ = ["check_music", "fetch_music", "keep_music", "save_music"]


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


MUSIC_EXTENSIONS = tuple(sorted(MUSIC_SUFFIXES))
# Besides audio/*: what clients and Discord label some audio files with.
OTHER_AUDIO_TYPES = frozenset(
    {"application/ogg", "video/ogg", "video/mp4", "application/octet-stream"}
)


def check_music(attachment: discord.Attachment, limit: int) -> None:
    """Refuse an attachment that is not music, or too big, before anything is downloaded."""
    name = plain(attachment.filename, 100)
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    audio_type = not content_type or content_type.startswith("audio/")
    if not attachment.filename.lower().endswith(MUSIC_EXTENSIONS) or not (
        audio_type or content_type in OTHER_AUDIO_TYPES
    ):
        raise ReelbotError(
            f"{name} is not a music file: attach an mp3, m4a, aac, ogg, opus, flac or wav file"
        )
    if attachment.size > limit:
        raise ReelbotError(
            f"{name} is {format_size(attachment.size)}; music may be at most {format_size(limit)}"
        )


async def fetch_music(attachment: discord.Attachment, cache: ArtifactCache, limit: int) -> Path:
    """Download a checked music attachment and keep it by its content's hash (`keep_music`)."""
    name = plain(attachment.filename, 100)
    data = await attachment.read()
    if len(data) > limit:  # the size Discord announced was not the real one
        raise ReelbotError(f"{name} is larger than {format_size(limit)}, the limit for music")
    suffix = next(s for s in MUSIC_EXTENSIONS if attachment.filename.lower().endswith(s))
    return await keep_music(data, cache, suffix, name=name)
