"""`/render voice:` against the real bot in its own process: Discord's autocomplete offers the
speech server's voices (Kokoro, fake), filtered by what is typed, at most 25, from a cached
list; and a two-speaker script renders with each scene's voice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tests.botproc import (
    BotProcess,
    all_done,
    bot_env,
    job_id_of,
    progress_messages,
    replies_to,
    running_bot,
    toml_text,
)
from tests.fakes.discord import (
    AttachmentSpec,
    FakeDiscord,
    GuildSpec,
    InjectedInteraction,
    MemberSpec,
    Upload,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUILD = GuildSpec(name="Voices", members=[MemberSpec(UserSpec(n)) for n in ("alice", "bob")])
CHANNEL = GUILD.channels[0].id
MANY = ["af_heart", *(f"af_voice{i:02d}" for i in range(40)), "bf_emma", "bm_george", "am_adam"]
DIALOGUE = (
    "# Two keepers\n\n## 1\nvoice: bf_emma\nIs the lamp lit?\n\n"
    "## 2\nvoice: bm_george\nIt is, every night.\n\n## 3\nThen all is well.\n"
)


@dataclass
class World:
    fake: FakeDiscord
    kokoro: FakeSpeech
    bot: BotProcess


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-voices")
    config = tmp / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [GUILD.id], "edit_interval": 0.3}}))
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech(voices=MANY) as kokoro,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=kokoro.base_url,
                      data_dir=tmp / "data", extra={"REELBOT_TTS__PROVIDER": "kokoro"})  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, kokoro, bot)
            log = bot.stderr()
            assert await bot.stop() == 0, log
        assert "Traceback" not in log, log
        assert fake.unhandled == [] and fake.server_errors == []


async def choices(world: World, typed: str, **options: object) -> list[dict[str, str]]:
    handle = await world.fake.send_autocomplete("render", {**options, "voice": typed}, "voice",
                                                member="alice")  # fmt: skip
    response = await handle.wait_response(timeout=3)  # Discord's deadline (the fake's too)
    assert response.type == 8
    found: list[dict[str, str]] = response.data["choices"]
    return found


async def test_the_voice_option_is_declared_with_autocomplete(world: World) -> None:
    found = world.fake.state.synced_command("render", GUILD.id)
    assert found is not None
    voice = next(o for o in found[0]["options"] if o["name"] == "voice")
    assert voice["autocomplete"] is True and voice["type"] == 3


async def test_autocomplete_offers_the_servers_voices_filtered(world: World) -> None:
    everything = await choices(world, "")
    assert len(everything) == 25  # Discord's most; the server has 44
    assert [c["value"] for c in everything] == MANY[:25]
    british = await choices(world, "B")
    assert [c["value"] for c in british] == ["bf_emma", "bm_george"]
    assert all(c["name"].startswith(c["value"] + " · ") for c in british)
    assert [c["value"] for c in await choices(world, "george")] == ["bm_george"]
    assert await choices(world, "zz-no-such") == []
    # Typing with other options already filled in works too.
    assert [c["value"] for c in await choices(world, "am_", aspect="16:9")] == ["am_adam"]
    # One request to the server for all of these: the list is cached.
    assert world.kokoro.voice_listings == 1


async def render(world: World, **options: object) -> InjectedInteraction:
    script = AttachmentSpec("keepers.md", DIALOGUE.encode())
    return await world.fake.send_slash_command("render", {"script": script, **options},
                                               member="bob")  # fmt: skip


async def delivered(world: World, handle: InjectedInteraction) -> Upload:
    await handle.wait_followups(1, timeout=20)
    job_id = job_id_of(handle)

    def video() -> Upload | None:
        for progress in progress_messages(world.fake, CHANNEL, job_id):
            if all_done(progress.revisions[-1]):
                for reply in replies_to(world.fake, CHANNEL, progress.id):
                    upload = next((u for u in world.fake.uploads if u.message_id == reply.id),
                                  None)  # fmt: skip
                    if upload is not None:
                        return upload
        return None

    return await world.fake.wait_for(video, 120, f"job {job_id}'s video")


async def test_a_two_speaker_script_speaks_with_each_scenes_voice(
    world: World, tmp_path: Path
) -> None:
    before = len(world.kokoro.requests)
    upload = await delivered(world, await render(world))
    asked = [r.json["voice"] for r in world.kokoro.requests[before:]]
    assert sorted(asked) == ["af_heart", "bf_emma", "bm_george"]  # scene 3: Kokoro's default
    assert world.kokoro.violations == []
    video = tmp_path / "keepers.mp4"
    video.write_bytes(upload.data)
    assert ffprobe(video).duration > 3
