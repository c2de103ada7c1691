"""`/settings` (presets) and a queued job's place, against the real bot in its own process
(fake Discord, Together.ai and a Kokoro speech server).

A person's settings win over the server's, and `/render`'s options win over both; what they
choose reaches the render: the voice the speech server is asked for, the style words in the
prompt Together receives, the aspect of the delivered video (ffprobe).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pipeline.cache import ArtifactCache
from tests.botproc import (
    BotProcess,
    all_done,
    bot_env,
    embed_of,
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
    RoleSpec,
    Upload,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe

pytestmark = pytest.mark.asyncio(loop_scope="module")

MANAGE_GUILD = 1 << 5  # Discord's "Manage Server" permission bit
MANAGER = RoleSpec("Manager", permissions=MANAGE_GUILD)
MODERATOR = RoleSpec("Moderator")
VOICES = ["af_heart", "bf_emma", "bm_george", "am_adam", "af_bella"]
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")
GUILD = GuildSpec(
    name="Preset Studio",
    roles=[MANAGER, MODERATOR],
    members=[
        *(MemberSpec(UserSpec(name)) for name in PEOPLE),
        MemberSpec(UserSpec("boss"), roles=[MANAGER]),
        MemberSpec(UserSpec("mod"), roles=[MODERATOR]),
    ],
)
CHANNEL = GUILD.channels[0].id


def script(tag: str) -> str:
    return (
        f"# {tag}\n\n## 1\nimage: a {tag} lighthouse\nThe {tag} lamp is lit.\n\n"
        f"## 2\nimage: a {tag} harbour\nThe {tag} boats rest.\n"
    )


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    speech: FakeSpeech
    bot: BotProcess
    data_dir: Path
    tmp: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-settings")
    config = tmp / "config.toml"
    config.write_text(
        toml_text(
            {
                "discord": {
                    "guild_ids": [GUILD.id],
                    "moderator_role_ids": [MODERATOR.id],
                    "edit_interval": 0.3,
                },
                "queue": {"max_concurrent_renders": 1, "per_user_limit": 5, "max_total": 20},
                "rate_limit": {"per_user": 20, "per_guild": 100},
            }
        )
    )
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech(voices=VOICES) as speech,
    ):
        data_dir = tmp / "data"
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=data_dir, extra={"REELBOT_TTS__PROVIDER": "kokoro"})  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, together, speech, bot, data_dir, tmp)
            log = bot.stderr()
            assert await bot.stop() == 0, log
        assert "Traceback" not in log, log
        assert fake.unhandled == [] and fake.server_errors == []


async def settings(world: World, sub: str, member: str, **options: Any) -> str:
    """Run `/settings <sub>` as `member`; the ephemeral answer's text (content and embed)."""
    handle = await world.fake.send_slash_command(f"settings {sub}", options, member=member)
    return await answer_text(handle)


async def answer_text(handle: InjectedInteraction) -> str:
    response = await handle.wait_response(timeout=20)
    if response.type == 4:  # answered at once
        data = response.data
        assert int(data.get("flags", 0)) & 64, data  # ephemeral
    else:  # deferred (an upload to fetch first): the follow-up
        assert response.type == 5, response
        data = (await handle.wait_followups(1, timeout=30))[0].data
    texts = [str(data.get("content") or "")]
    for embed in data.get("embeds", []):
        texts += [str(embed.get("title", "")), str(embed.get("description", ""))]
    return "\n".join(texts)


async def render(world: World, member: str, tag: str, **options: Any) -> InjectedInteraction:
    options = {"script": AttachmentSpec(f"{tag}.md", script(tag).encode()), **options}
    return await world.fake.send_slash_command("render", options, member=member)


async def delivered(world: World, handle: InjectedInteraction) -> tuple[int, Upload]:
    fake = world.fake
    await handle.wait_followups(1, timeout=20)
    job_id = job_id_of(handle)

    def video() -> Upload | None:
        for progress in progress_messages(fake, CHANNEL, job_id):
            if not all_done(progress.revisions[-1]):
                continue
            for reply in replies_to(fake, CHANNEL, progress.id):
                upload = next((u for u in fake.uploads if u.message_id == reply.id), None)
                if upload is not None:
                    return upload
        return None

    return job_id, await fake.wait_for(video, 120, f"job {job_id}'s video")


def job_options(world: World, job_id: int) -> dict[str, Any]:
    with sqlite3.connect(world.data_dir / "bot.sqlite3") as db:
        row = db.execute("SELECT options FROM jobs WHERE id = ?", (job_id,)).fetchone()
    options: dict[str, Any] = json.loads(row[0])
    return options


def frame_of(world: World, upload: Upload) -> tuple[int, int]:
    path = world.tmp / f"{upload.message_id}.mp4"
    path.write_bytes(upload.data)
    video = ffprobe(path).stream("video")
    return int(video["width"]), int(video["height"])


def asked(world: World, tag: str) -> tuple[list[str], list[str], set[str]]:
    """What the render of `tag` asked for: prompts, negative prompts, voices."""
    images = [r.json for r in world.together.requests if tag in str(r.json.get("prompt", ""))]
    voices = {r.json["voice"] for r in world.speech.requests
              if f"The {tag} " in str(r.json.get("input"))}  # fmt: skip
    return ([str(i["prompt"]) for i in images], [str(i.get("negative_prompt", "")) for i in images],
            voices)  # fmt: skip


# ------------------------------------------------------------ who may set what


async def test_only_managers_and_moderators_set_the_servers_settings(world: World) -> None:
    refused = await settings(world, "server", "carol", style="neon")
    assert "Only the server's managers" in refused
    assert "/settings mine" in refused
    assert "neon" not in await settings(world, "show", "carol")
    refused = await settings(world, "clear", "carol", level="server")
    assert "Only the server's managers" in refused
    # Looking at the server's settings is fine for anyone.
    assert "This server's settings" in await settings(world, "server", "carol")
    # A moderator role may (and a Manage Server role, below).
    assert "now" in await settings(world, "server", "mod", negative="text, watermark")


async def test_voice_is_autocompleted_from_the_speech_servers_voices(world: World) -> None:
    handle = await world.fake.send_autocomplete("settings mine", {"voice": "bf"}, "voice",
                                                member="alice")  # fmt: skip
    response = await handle.wait_response(timeout=3)
    assert response.type == 8
    assert [c["value"] for c in response.data["choices"]] == ["bf_emma"]


# ------------------------------------------------------------ precedence, reaching the render


async def test_settings_reach_the_render_with_their_precedence(world: World) -> None:
    said = await settings(world, "server", "boss", voice="bm_george", aspect="1:1",
                          style="watercolour, soft light", captions=False)  # fmt: skip
    assert "watercolour" in said
    said = await settings(world, "mine", "alice", voice="bf_emma", aspect="16:9")
    assert "bf_emma" in said

    shown = await settings(world, "show", "alice")
    assert "**Voice**: `bf_emma` — from your settings" in shown
    assert "**Aspect**: `16:9` — from your settings" in shown
    assert "**Image style**: “watercolour, soft light” — from this server's settings" in shown
    assert "**Negative prompt**: “text, watermark” — from this server's settings" in shown
    assert "**Captions**: off — from this server's settings" in shown
    assert "**Review first**: not set (off)" in shown
    shown = await settings(world, "show", "bob")  # no settings of his own
    assert "**Voice**: `bm_george` — from this server's settings" in shown

    # Alice: her voice and aspect, the server's style and negative prompt.
    job, upload = await delivered(world, await render(world, "alice", "amber"))
    prompts, negatives, voices = asked(world, "amber")
    assert sorted(prompts) == ["a amber harbour, watercolour, soft light",
                               "a amber lighthouse, watercolour, soft light"]  # fmt: skip
    assert all(n == "text, watermark" for n in negatives), negatives
    assert voices == {"bf_emma"}
    assert frame_of(world, upload) == (1920, 1080)
    assert job_options(world, job)["review"] is False

    # Bob: the server's voice and aspect.
    _, upload = await delivered(world, await render(world, "bob", "cobalt"))
    assert asked(world, "cobalt")[2] == {"bm_george"}
    assert frame_of(world, upload) == (1080, 1080)

    # /render's own options win over both.
    _, upload = await delivered(
        world, await render(world, "alice", "crimson", aspect="9:16", voice="am_adam")
    )
    assert asked(world, "crimson")[2] == {"am_adam"}
    assert frame_of(world, upload) == (1080, 1920)

    # Cleared, the server's apply again.
    assert "voice" in await settings(world, "clear", "alice", level="mine", setting="voice")
    assert "**Voice**: `bm_george` — from this server's settings" in await settings(
        world, "show", "alice"
    )
    assert "nothing to clear" in await settings(world, "clear", "alice", level="mine",
                                                setting="voice")  # fmt: skip


async def test_preset_music_is_kept_while_a_preset_names_it(world: World) -> None:
    track = world.tmp / "theme.flac"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "sine=frequency=880:duration=2:sample_rate=48000", "-c:a", "flac", str(track)],
        check=True, timeout=60,
    )  # fmt: skip
    bad = await settings(world, "mine", "dave", music=AttachmentSpec("theme.exe", b"MZ"))
    assert "is not a music file" in bad
    said = await settings(world, "mine", "dave",
                          music=AttachmentSpec("theme.flac", track.read_bytes()))  # fmt: skip
    assert "music an uploaded track" in said
    assert "**Music**: an uploaded track — from your settings" in await settings(
        world, "show", "dave"
    )
    cache = ArtifactCache(world.data_dir / "cache")
    kept = [p for p in (world.data_dir / "cache" / "music").rglob("*.flac")]
    assert len(kept) == 1 and kept[0].read_bytes() == track.read_bytes()
    assert kept[0].resolve() in cache.pinned()
    # The size cap never evicts it (everything else may go).
    cache.evict(0)
    assert kept[0].is_file()

    job, upload = await delivered(world, await render(world, "dave", "dusk"))
    assert job_options(world, job)["music"] == str(kept[0])
    path = world.tmp / "dusk.mp4"
    path.write_bytes(upload.data)
    assert ffprobe(path).stream("audio")["codec_name"] == "aac"

    # Cleared: no longer pinned (the cache may remove it when it needs the room).
    assert "music" in await settings(world, "clear", "dave", level="mine")
    assert kept[0].resolve() not in cache.pinned()


# ------------------------------------------------------------ a queued job's place


async def test_a_queued_jobs_message_shows_its_place_as_it_changes(world: World) -> None:
    world.together.latency = 1.5  # the first job holds the render slot a while
    try:
        first = await render(world, "erin", "first")
        second = await render(world, "frank", "second")
        third = await render(world, "carol", "third")
        ids = []
        for handle in (first, second, third):
            await handle.wait_followups(1, timeout=20)
            ids.append(job_id_of(handle))

        def headline(job_id: int) -> str:
            messages = progress_messages(world.fake, CHANNEL, job_id)
            if not messages:
                return ""
            return str(embed_of(messages[-1].revisions[-1]).get("description", ""))

        await world.fake.wait_for(lambda: "2nd in line" in headline(ids[2]), 30, "2nd in line")
        assert "next in line" in headline(ids[1])
        assert "starts in about" in headline(ids[2])
        cancelled = await world.fake.send_slash_command("cancel", {"job": ids[1]}, member="frank")
        await cancelled.wait_response()
        await world.fake.wait_for(lambda: "next in line" in headline(ids[2]), 30, "moved up")
    finally:
        world.together.latency = 0.05
    await delivered(world, third)
