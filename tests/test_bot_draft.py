"""`/draft` against the real bot in its own process: a loopback chat completions server that
keeps to OpenAI's published contract (tests/fakes/llm.py), fake Discord, Together.ai and speech
servers, real ffmpeg. The draft comes back as a file with ▶️ Render and ✏️ Edit; an unparsable
draft is sent back once with the parser's words; one unusable twice is one line; and a bot
without `[llm] base_url` says what to configure.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.cogs.draft import NOT_CONFIGURED
from pipeline.script import parse_script
from tests.botproc import (
    BotProcess,
    bot_env,
    job_id_of,
    progress_messages,
    replies_to,
    running_bot,
    toml_text,
)
from tests.fakes.discord import (
    FakeDiscord,
    GuildSpec,
    InjectedInteraction,
    MemberSpec,
    RecordedMessage,
    UserSpec,
)
from tests.fakes.llm import FakeChat, Reply
from tests.fakes.server import RecordedRequest
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe
from tests.test_draft import GOOD, NO_NARRATION

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUILD = GuildSpec(
    name="Draft Studio", members=[MemberSpec(UserSpec(n)) for n in ("alice", "bob", "carol")]
)
CHANNEL = GUILD.channels[0].id
EPHEMERAL = 64
LONG = "# A Long Walk\n\n" + "".join(
    f"## {n}\nimage: a long mountain path, stretch {n}, morning light\n"
    + " ".join(["The path climbs on and on through the quiet pines."] * 16) + "\n\n"
    for n in range(1, 7)
)  # fmt: skip


class TopicChat(FakeChat):
    """The fake chat server, answering each topic with its own replies in turn (the first
    draft, then the one after it was sent back), so the tests do not depend on their order."""

    def __init__(self, by_topic: dict[str, list[str]]) -> None:
        super().__init__(["(no topic matched)"])
        self.by_topic = by_topic

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        messages = (rec.json or {}).get("messages") or [{}, {}]
        match = re.match(r"Topic: (.*)", str(messages[1].get("content", "")))
        replies = self.by_topic.get(match[1] if match else "", [])
        attempt = sum(1 for m in messages if m.get("role") == "assistant")
        if replies:
            self.replies = [Reply(replies[min(attempt, len(replies) - 1)])]
        return await super().respond(request, rec)

    def about(self, topic: str) -> list[list[dict[str, Any]]]:
        return [
            self.conversation(i) for i, r in enumerate(self.requests)
            if r.json and f"Topic: {topic}\n" in r.json["messages"][1]["content"]
        ]  # fmt: skip


@dataclass
class World:
    fake: FakeDiscord
    chat: TopicChat
    together: FakeTogether
    bot: BotProcess
    tmp: Path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-draft")
    config = tmp / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [GUILD.id], "edit_interval": 0.3}}))
    chat = TopicChat({
        "why cats purr": [NO_NARRATION, GOOD],
        "a long walk": [LONG],
        "nothing works": [NO_NARRATION, NO_NARRATION],
    })  # fmt: skip
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        chat,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp / "data",
                      extra={"REELBOT_LLM__BASE_URL": chat.base_url})  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, chat, together, bot, tmp)
            log = bot.stderr()
            assert await bot.stop() == 0, log
        assert "Traceback" not in log, log
        assert fake.unhandled == [] and fake.server_errors == []


async def draft(world: World, member: str, **options: Any) -> InjectedInteraction:
    return await world.fake.send_slash_command("draft", options, member=member)


async def drafted(handle: InjectedInteraction) -> tuple[RecordedMessage, str]:
    """The draft message (ephemeral, after a "thinking…" defer) and its file's text."""
    response = await handle.wait_response(timeout=3)
    assert response.type == 5 and response.data["flags"] & EPHEMERAL
    [message] = await handle.wait_followups(1, timeout=30)
    assert message.ephemeral
    return message, message.revisions[-1].uploads[0].data.decode() if message.revisions[
        -1
    ].uploads else ""


def custom_ids(message: RecordedMessage) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row.get("components", [])]


async def said(handle: InjectedInteraction) -> str:
    response = await handle.wait_response(timeout=3)
    if response.type == 5:
        [followup] = await handle.wait_followups(1, timeout=30)
        assert followup.ephemeral
        return followup.content
    assert response.type == 4 and response.data["flags"] & EPHEMERAL
    return response.content or ""


async def delivered(world: World, job_id: int) -> Path:
    fake = world.fake

    def video() -> bytes | None:
        for progress in progress_messages(fake, CHANNEL, job_id):
            for reply in replies_to(fake, CHANNEL, progress.id):
                upload = next((u for u in fake.uploads if u.message_id == reply.id), None)
                if upload is not None:
                    return upload.data
        return None

    data = await fake.wait_for(video, 120, f"job {job_id}'s video")
    path = world.tmp / f"job-{job_id}.mp4"
    path.write_bytes(data)
    return path


# ------------------------------------------------------------ the tests


async def test_draft_retried_once_then_rendered_for_the_clicker(world: World) -> None:
    handle = await draft(world, "alice", topic="why cats purr", scenes=3, aspect="16:9")
    message, text = await drafted(handle)
    # Sent back once with the parser's words, then accepted.
    first, second = world.chat.about("why cats purr")
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert "line 7 (scene 2): this scene has no narration" in second[3]["content"]
    assert len(first) == 2 and "exactly 3" in first[1]["content"]

    assert "A draft of **Why Cats Purr**: 3 scenes" in message.content
    assert "sent back once" in message.content
    assert message.attachments[0]["filename"] == "why-cats-purr.md"
    script = parse_script(text, filename="why-cats-purr.md")
    assert len(script.scenes) == 3 and str(script.aspect) == "16:9"
    assert text.startswith("# Why Cats Purr\naspect: 16:9\n")
    assert custom_ids(message) == ["reelbot:draft:render", "reelbot:draft:edit"]

    # ▶️ Render, clicked by someone else: queued as their render.
    before = len(world.together.requests)
    clicked = await world.fake.click_button(message, "reelbot:draft:render", member="bob")
    queued = await said(clicked)
    assert queued.startswith("Queued as **job #"), queued
    job_id = job_id_of(clicked)
    with sqlite3.connect(world.tmp / "data" / "bot.sqlite3", timeout=10) as db:
        [(user_id, filename)] = db.execute(
            "SELECT user_id, filename FROM jobs WHERE id = ?", (job_id,)
        ).fetchall()
    assert (user_id, filename) == (GUILD.member("bob").id, "why-cats-purr.md")
    out = await delivered(world, job_id)
    probe = ffprobe(out)
    assert (probe.stream("video")["width"], probe.stream("video")["height"]) == (1920, 1080)
    assert probe.stream("audio")["codec_name"] == "aac"
    prompts = [str(r.json["prompt"]) for r in world.together.requests[before:] if r.json]
    assert len(prompts) == 3 and prompts[0].startswith("a ginger cat curled up")


async def test_edit_opens_the_form_with_the_draft(world: World) -> None:
    message, text = await drafted(await draft(world, "carol", topic="why cats purr", scenes=3))
    opened = await world.fake.click_button(message, "reelbot:draft:edit", member="carol")
    response = await opened.wait_response(timeout=3)
    assert response.type == 9 and opened.modal is not None
    # The phone form (bot/render_form.py), its script box holding the draft.
    [text_input] = [
        c["component"] for c in opened.modal["components"]
        if c["component"]["custom_id"] == "render:script"
    ]  # fmt: skip
    assert text_input["value"] == text
    edited = text.replace("Why Cats Purr", "Why Cats Really Purr")
    submitted = await world.fake.submit_modal(opened, {text_input["custom_id"]: edited},
                                              member="carol")  # fmt: skip
    assert (await said(submitted)).startswith("Queued as **job #")
    job_id = job_id_of(submitted)
    [progress] = await world.fake.wait_for(
        lambda: progress_messages(world.fake, CHANNEL, job_id), 20, "the progress message"
    )
    assert "Why Cats Really Purr" in str(progress.embeds)
    # Done before the next test counts image requests.
    await world.fake.wait_for(lambda: "**Done**" in str(progress.embeds), 90, "the video")


async def test_a_draft_longer_than_the_form_is_edited_as_a_file(world: World) -> None:
    message, text = await drafted(await draft(world, "carol", topic="a long walk"))
    assert len(text) > 4000
    answer = await said(await world.fake.click_button(message, "reelbot:draft:edit",
                                                      member="carol"))  # fmt: skip
    assert answer == (
        f"This draft is {len(text):,} characters, more than the form's 4,000: download "
        "a-long-walk.md above, edit it, and render it with `/render script:`."
    )


async def test_a_draft_unusable_twice_is_one_line(world: World) -> None:
    before = len(world.together.requests)
    answer = await said(await draft(world, "alice", topic="nothing works", scenes=3))
    assert answer.startswith("The model's script could not be used, even after it was told why")
    assert "scene 2): this scene has no narration" in answer and "\n" not in answer
    assert len(world.chat.about("nothing works")) == 2
    assert len(world.together.requests) == before


async def test_draft_without_a_chat_model_says_what_to_configure(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [GUILD.id]}}))
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether() as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp_path / "data")  # fmt: skip
        async with running_bot(fake, config, env, tmp_path / "bot.log") as bot:
            handle = await fake.send_slash_command("draft", {"topic": "cats"}, member="alice")
            assert await said(handle) == NOT_CONFIGURED
            assert "[llm] base_url" in NOT_CONFIGURED
            assert len(fake.messages.get(CHANNEL, [])) == 1  # that answer, nothing else
            assert await bot.stop() == 0
        assert fake.unhandled == [] and fake.server_errors == []
