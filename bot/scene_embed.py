"""The look of a job's thread, drawn from state alone: each scene's message, a replaced
version kept in the thread's history, and the storyboard. Posting them is
`bot/scene_thread.py`; the scene messages' buttons are handed in (`bot/controls.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import discord

from pipeline.errors import ScriptError
from pipeline.script import parse_script

from .store import Job, SceneRecord
from .text import plain

__all__ = ["STORYBOARD_FILE", "replaced", "scene_embed", "scene_filename", "storyboard_embed"]

STORYBOARD_FILE = "storyboard.jpg"  # its file name in the message


def scene_filename(scene: int, version: int, suffix: str = ".png") -> str:
    """Version 1 keeps the plain name; later versions get their own (no stale client cache)."""
    tail = f"-v{version}" if version > 1 else ""
    return f"scene-{scene:02d}{tail}{suffix or '.png'}"


def scene_embed(job: Job, record: SceneRecord, *, filename: str) -> discord.Embed:
    """A scene's thread message: its image, prompt, negative prompt, seed and version (and,
    for a review job, whether it is approved)."""
    embed = discord.Embed(
        title=f"Scene {record.number}", description=record.image_prompt[:4000] or "—"
    )
    embed.add_field(
        name="Negative prompt", value=(record.negative_prompt or "—")[:1000], inline=False
    )
    own = _own_media(job, record)
    if own is not None:
        embed.add_field(name="Picture", value=own, inline=True)
    embed.add_field(name="Seed", value=str(record.seed), inline=True)
    embed.add_field(name="Version", value=str(record.version), inline=True)
    if job.options.review:
        status = "✅ Approved" if record.approved else "👀 Waiting for approval"
        embed.add_field(name="Review", value=status, inline=True)
    embed.set_image(url=f"attachment://{filename}")
    return embed


def _own_media(job: Job, record: SceneRecord) -> str | None:
    """What a scene shows instead of a generated image, if anything: a picture uploaded with
    Use my picture, or the media its script names (uploaded with the render)."""
    if record.own_media is not None:
        return "🖼️ Uploaded (Use my picture)"
    if not job.options.media:
        return None
    try:
        script = parse_script(job.script, filename=job.filename)
    except ScriptError:  # it was read when the job was queued; never here
        return None
    name = next((s.media for s in script.scenes if s.number == record.number), None)
    return f"🖼️ {plain(name, 100)} (uploaded with the render)" if name else None


def replaced(
    shown: Sequence[discord.Embed], scene: int, old: int | None, new: int, image: str | None
) -> tuple[str, discord.Embed]:
    """The version a scene message showed (`shown`: its embeds), kept as a reply to it before
    version `new` replaces it: its prompt and seed, without the review state, with its own
    `image`. The reply's text and embed."""
    embed = shown[0].copy() if shown else discord.Embed()
    embed.title = f"Scene {scene} · version {old or 1} (replaced)"
    for index in reversed(range(len(embed.fields))):
        if embed.fields[index].name == "Review":
            embed.remove_field(index)
    if image is not None:
        embed.set_image(url=f"attachment://{image}")
    text = (
        f"Scene {scene}, version {old or 1}: replaced by version {new} (the message this "
        "replies to)."
    )
    return text, embed


def storyboard_embed(count: int, *, updated: bool) -> discord.Embed:
    """The storyboard: every scene's image on one numbered sheet (`STORYBOARD_FILE`)."""
    embed = discord.Embed(
        title="Storyboard (updated)" if updated else "Storyboard",
        description=f"All {count} scenes, in order: left to right, top to bottom.",
    )
    embed.set_image(url=f"attachment://{STORYBOARD_FILE}")
    return embed
