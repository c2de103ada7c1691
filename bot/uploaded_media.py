"""Own media in Discord: the files uploaded with a render (`/render media1..4:`, or a form's
file upload) or for one scene ("Use my picture" in the review thread).

    script names `media: logo.png` ─ matched to an upload by its file name ─ size as Discord
    announces it ─ downloaded ─ pipeline/own_media.py: ffprobe, decoded, copied into the cache

In Discord a name in a script only ever refers to a file uploaded with that render
(`UploadedMedia`), never to a path on the bot's host: the download goes to a temporary name in
the artifact cache and is kept under its content's sha256, like everything else there. Only the
uploads the script names are downloaded. Every refusal is one `ScriptError` naming the scene and
the problem, before anything is queued or paid for.

The caller pins what it receives (a `CachePin`) until the job holds its own pin
(`JobRunner.pin_media`): no eviction removes it while the job is queued, running or in review.
A front end with other uploads (a form's file upload) passes them to
`RenderCog.queue_render(..., media=...)`, which does all of this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import discord

from pipeline.cache import ArtifactCache, CachePin
from pipeline.config import LimitsConfig
from pipeline.errors import ReelbotError, ScriptError
from pipeline.own_media import (
    MEDIA_KIND,
    MediaProblem,
    OwnMedia,
    UploadedMedia,
    prepare_media,
)
from pipeline.script import Scene, Script

from .store import JobOptions, StoredMedia
from .text import format_size, plain

__all__ = ["ReceivedMedia", "receive_media", "receive_scene_media"]


@dataclass(frozen=True)
class ReceivedMedia:
    media: dict[int, OwnMedia]  # by scene number: checked, in the cache, pinned
    unused: list[str]  # uploads no scene names (not downloaded)

    def options(self, options: JobOptions) -> JobOptions:
        """The job's options with this media, by the names the script gives."""
        if not self.media:
            return options
        stored = {m.name: StoredMedia.of(m) for m in self.media.values()}
        return options.model_copy(update={"media": stored})

    @property
    def note(self) -> str:
        """For the answer: the uploads no scene names."""
        if not self.unused:
            return ""
        names = ", ".join(plain(n, 60) for n in self.unused)
        return f" Not used (no scene names it with `media:`): {names}."


async def receive_media(
    script: Script,
    uploads: Sequence[discord.Attachment],
    cache: ArtifactCache,
    limits: LimitsConfig,
    *,
    pin: CachePin,
) -> ReceivedMedia:
    """Each scene's own media from `uploads`, by the names the script gives: matched, checked,
    downloaded (only those named) and kept in `cache`, pinned by `pin`. Raises ScriptError
    naming the first scene whose media cannot be used (a name not uploaded, a file too large,
    not a picture or clip, damaged, too long)."""
    names = [a.filename for a in uploads]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ReelbotError(f"two uploads are named {plain(twice[0], 100)}: rename one of them")
    # Which upload each scene names (the same rules as the download's, without it).
    index = UploadedMedia({a.filename: Path(str(i)) for i, a in enumerate(uploads)})
    wanted: dict[int, discord.Attachment] = {}
    for scene in script.scenes:
        if scene.media is None:
            continue
        try:
            position = int(index.find(scene.media).name)
        except MediaProblem as exc:
            raise _refusal(scene, exc) from None
        attachment = uploads[position]
        if attachment.size > limits.max_media_bytes:  # refused before it is downloaded
            raise _refusal(scene, MediaProblem(
                f"is {format_size(attachment.size)}; at most "
                f"{format_size(limits.max_media_bytes)} is accepted ([limits] max_media_bytes)"
            ))  # fmt: skip
        wanted[position] = attachment
    unused = [a.filename for i, a in enumerate(uploads) if i not in wanted]
    if not wanted:
        return ReceivedMedia({}, unused)
    files: dict[str, Path] = {}
    try:
        for attachment in wanted.values():
            files[attachment.filename] = await _download(attachment, cache)
        media = await prepare_media(script, UploadedMedia(files), cache, limits, pin=pin)
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)
    return ReceivedMedia(media, unused)


async def receive_scene_media(
    number: int,
    upload: discord.Attachment,
    cache: ArtifactCache,
    limits: LimitsConfig,
    *,
    pin: CachePin,
) -> OwnMedia:
    """A picture (or clip) uploaded for scene `number`, checked and kept as `receive_media`
    keeps a render's; ScriptError naming the scene if it cannot be used."""
    scene = Scene(number=number, narration="-", image_prompt="", media=upload.filename)
    script = Script(title="-", scenes=(scene,))
    received = await receive_media(script, [upload], cache, limits, pin=pin)
    return received.media[number]


async def _download(attachment: discord.Attachment, cache: ArtifactCache) -> Path:
    """The upload, under a temporary name in the cache's media folder (never its own name)."""
    try:
        data = await attachment.read()
    except (discord.HTTPException, discord.NotFound) as exc:
        raise ReelbotError(
            f"I could not download {plain(attachment.filename, 100)} from Discord "
            f"({exc.status}); attach it again"
        ) from None
    temp = cache.scratch(MEDIA_KIND)
    await asyncio.to_thread(temp.write_bytes, data)
    return temp


def _refusal(scene: Scene, problem: MediaProblem) -> ScriptError:
    return ScriptError(f"media {scene.media!r} {problem}", line=scene.line, scene=scene.number)
