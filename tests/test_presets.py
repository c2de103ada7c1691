"""Presets in the store (bot/presets.py): precedence, a script's own header, the style words in
the plan, and the music pin. The Discord side is tests/test_bot_settings.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import BotSettings
from bot.presets import PIN_OWNER, Level, Presets, Setting, with_style
from bot.store import JobOptions, Store
from pipeline.cache import ArtifactCache
from pipeline.plan import plan_render
from pipeline.script import parse_script

GUILD, ALICE, BOB = 1, 10, 11
SCRIPT = "# T\n## 1\nimage: a harbour\nnegative: fog\nWords.\n## 2\nimage: a pier.\nMore words.\n"


@pytest.fixture
async def presets(tmp_path: Path) -> AsyncIterator[Presets]:
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        yield Presets(store, ArtifactCache(tmp_path / "cache"))


async def test_the_command_wins_then_the_person_then_the_server(presets: Presets) -> None:
    await presets.save(Level.SERVER, GUILD, {Setting.VOICE: "server-voice",
                       Setting.ASPECT: "1:1", Setting.REVIEW: "true"}, by=1)  # fmt: skip
    await presets.save(Level.USER, ALICE, {Setting.VOICE: "alice-voice"}, by=ALICE)
    alice = await presets.resolve(JobOptions(), guild_id=GUILD, user_id=ALICE)
    assert (alice.voice, alice.aspect, alice.review) == ("alice-voice", "1:1", True)
    bob = await presets.resolve(JobOptions(aspect="9:16", review=False), guild_id=GUILD,
                                user_id=BOB)  # fmt: skip
    assert (bob.voice, bob.aspect, bob.review) == ("server-voice", "9:16", False)
    elsewhere = await presets.resolve(JobOptions(), guild_id=2, user_id=BOB)
    assert (elsewhere.voice, elsewhere.aspect, elsewhere.review) == (None, None, False)
    applied = await presets.applying(GUILD, ALICE)
    assert applied[Setting.VOICE].source == "your settings"
    assert applied[Setting.ASPECT].source == "this server's settings"


async def test_a_scripts_own_voice_and_aspect_beat_a_preset(presets: Presets) -> None:
    await presets.save(Level.USER, ALICE, {Setting.VOICE: "mine", Setting.ASPECT: "1:1"}, by=1)
    script = parse_script("# T\naspect: 16:9\nvoice: theirs\n## 1\nimage: x\nWords.\n")
    options = await presets.resolve(JobOptions(), guild_id=GUILD, user_id=ALICE, script=script)
    assert (options.voice, options.aspect) == (None, None)


async def test_clearing_says_what_was_set(presets: Presets) -> None:
    await presets.save(Level.USER, ALICE, {Setting.STYLE: "ink"}, by=ALICE)
    assert await presets.clear(Level.USER, ALICE, [Setting.VOICE]) == []
    assert await presets.clear(Level.USER, ALICE) == [Setting.STYLE]
    assert await presets.get(Level.USER, ALICE) == {}


async def test_preset_music_is_pinned_while_named(presets: Presets, tmp_path: Path) -> None:
    cache = presets.cache
    track = cache.path("music", "ab" * 32, ".flac")
    track.parent.mkdir(parents=True)
    track.write_bytes(b"x" * 1000)
    other = cache.path("music", "cd" * 32, ".flac")
    other.parent.mkdir(parents=True)
    other.write_bytes(b"y" * 1000)
    await presets.save(Level.SERVER, GUILD, {Setting.MUSIC: str(track)}, by=1)
    await presets.save(Level.USER, ALICE, {Setting.MUSIC: str(track)}, by=1)
    cache.evict(0)
    assert track.is_file() and not other.exists()
    await presets.clear(Level.SERVER, GUILD)
    assert track.resolve() in cache.pinned()  # Alice's preset still names it
    await presets.clear(Level.USER, ALICE)
    assert not (cache.root / ".pins" / f"{PIN_OWNER}.json").exists()
    cache.evict(0)
    assert not track.exists()


def test_the_style_ends_every_prompt_and_the_negative_comes_first() -> None:
    plan = plan_render(parse_script(SCRIPT), BotSettings())
    styled = with_style(plan, "ink drawing", "text, fog")
    assert [s.image.prompt for s in styled.scenes] == ["a harbour, ink drawing",
                                                       "a pier, ink drawing"]  # fmt: skip
    assert [s.image.negative_prompt for s in styled.scenes] == ["text, fog", "text, fog"]
    assert with_style(plan, None, None) is plan
