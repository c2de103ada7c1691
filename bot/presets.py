"""Presets: a server's and a person's defaults for `/render`, kept in the store (`presets`,
migration V5) and set with `/settings` (`bot/cogs/settings.py`).

    /render's options  ─┐
    the person's preset ─┼─ first one set wins ──► the job's options (JobOptions)
    the server's preset ─┤
    the configuration  ─┘  (what is left None: the script's header, then the config file)

A preset is a default, not an order: a voice or an aspect the script names itself is kept.

A person's presets follow them to every server; a server's are set by its managers (Manage
Server) or the roles in `[discord] moderator_role_ids`. A preset's music is an uploaded track
in the artefact cache: the cache keeps it (a pin, `pipeline/cache.py`) while any preset names it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from pipeline.cache import ArtifactCache
from pipeline.plan import RenderPlan, merge_negative
from pipeline.script import Script

from .store import JobOptions, Store

__all__ = ["PIN_OWNER", "Applied", "Level", "Presets", "Setting", "describe", "with_style"]

PIN_OWNER = "presets"  # the cache pin that keeps every preset's music


class Setting(StrEnum):
    VOICE = "voice"
    ASPECT = "aspect"
    CAPTIONS = "captions"
    REVIEW = "review"
    STYLE = "style"  # added to every image prompt
    NEGATIVE = "negative"  # a default negative prompt
    MUSIC = "music"  # an uploaded track's path in the artefact cache


class Level(StrEnum):
    SERVER = "server"
    USER = "user"


# Where a value comes from, in the order they win.
SOURCES = ("/render", "your settings", "this server's settings")
FLAGS = (Setting.CAPTIONS, Setting.REVIEW)


@dataclass(frozen=True)
class Applied:
    """One setting as a render here would use it."""

    value: str
    source: str  # "your settings" or "this server's settings"


class Presets:
    def __init__(self, store: Store, cache: ArtifactCache) -> None:
        self.store = store
        self.cache = cache

    async def get(self, level: Level, owner_id: int) -> dict[Setting, str]:
        rows = await self.store.fetch(
            "SELECT name, value FROM presets WHERE level = ? AND owner_id = ?",
            (level.value, owner_id),
        )
        known = {s.value for s in Setting}
        return {Setting(str(r[0])): str(r[1]) for r in rows if r[0] in known}

    async def save(
        self, level: Level, owner_id: int, values: Mapping[Setting, str], *, by: int
    ) -> None:
        now = time.time()
        async with self.store.transaction() as db:
            await db.executemany(
                "INSERT INTO presets (level, owner_id, name, value, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (level, owner_id, name)"
                " DO UPDATE SET value = excluded.value, set_by = excluded.set_by,"
                " set_at = excluded.set_at",
                [(level.value, owner_id, s.value, v, by, now) for s, v in values.items()],
            )
        if Setting.MUSIC in values:
            await self.pin_music()

    async def clear(
        self, level: Level, owner_id: int, names: Iterable[Setting] | None = None
    ) -> list[Setting]:
        """Remove some (None: all) of one level's presets; the ones that were set."""
        had = await self.get(level, owner_id)
        gone = [s for s in (had if names is None else names) if s in had]
        if gone:
            async with self.store.transaction() as db:
                await db.executemany(
                    "DELETE FROM presets WHERE level = ? AND owner_id = ? AND name = ?",
                    [(level.value, owner_id, s.value) for s in gone],
                )
        if Setting.MUSIC in gone:
            await self.pin_music()
        return gone

    async def applying(self, guild_id: int | None, user_id: int) -> dict[Setting, Applied]:
        """What a render by `user_id` in `guild_id` takes from the presets, and from where."""
        found: dict[Setting, Applied] = {}
        if guild_id is not None:
            for name, value in (await self.get(Level.SERVER, guild_id)).items():
                found[name] = Applied(value, SOURCES[2])
        for name, value in (await self.get(Level.USER, user_id)).items():
            found[name] = Applied(value, SOURCES[1])
        return found

    async def resolve(
        self,
        options: JobOptions,
        *,
        guild_id: int | None,
        user_id: int,
        script: Script | None = None,
    ) -> JobOptions:
        """`options` (what /render was given: None where nothing was) with each unset value
        taken from the presets; review ends up True or False. A preset is a default: a voice
        or an aspect the `script` names itself is kept."""
        applied = {name: a.value for name, a in (await self.applying(guild_id, user_id)).items()}
        if script is not None and (script.voice or any(s.voice for s in script.scenes)):
            applied.pop(Setting.VOICE, None)
        if script is not None and script.aspect is not None:
            applied.pop(Setting.ASPECT, None)
        update: dict[str, object] = {}
        for name, value in applied.items():
            if getattr(options, name.value) is not None:
                continue
            if name in FLAGS:
                update[name.value] = value == "true"
            elif name is Setting.MUSIC and not Path(value).is_file():
                continue  # removed by hand: render without it rather than fail
            else:
                update[name.value] = value
        if options.review is None and "review" not in update:
            update["review"] = False
        return options.model_copy(update=update)

    async def music_in_use(self) -> list[Path]:
        rows = await self.store.fetch(
            "SELECT DISTINCT value FROM presets WHERE name = ?", (Setting.MUSIC.value,)
        )
        return [Path(str(r[0])) for r in rows]

    async def pin_music(self) -> None:
        """Pin exactly the music the presets name (the cache's size cap never evicts it)."""
        paths = [p for p in await self.music_in_use() if p.is_file()]
        self.cache.unpin(PIN_OWNER)
        if paths:
            self.cache.pin(PIN_OWNER, paths)


def describe(name: Setting, value: str) -> str:
    """A preset's value as `/settings show` says it."""
    if name in FLAGS:
        return "on" if value == "true" else "off"
    if name is Setting.MUSIC:
        return "an uploaded track"
    return value


def with_style(plan: RenderPlan, style: str | None, negative: str | None) -> RenderPlan:
    """A plan whose image prompts end with `style` and whose negative prompts include
    `negative` (the most general part: the scene's own terms follow it)."""
    if not style and not negative:
        return plan
    scenes = []
    for scene in plan.scenes:
        image = scene.image
        prompt = f"{image.prompt.rstrip(' ,.')}, {style}" if style else image.prompt
        scenes.append(
            replace(
                scene,
                image=replace(
                    image,
                    prompt=prompt,
                    negative_prompt=merge_negative(negative, image.negative_prompt),
                ),
            )
        )
    return replace(plan, scenes=tuple(scenes))
