"""The real bot, in its own process, against a fake Discord, Together.ai and speech server.

One bot process serves the whole module (starting one costs seconds); each test acts as its
own member, so per-user limits do not leak between tests.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.botproc import (
    DONE_SYMBOLS,
    BotProcess,
    all_done,
    bot_env,
    embed_of,
    job_id_of,
    progress_messages,
    replies_to,
    running_bot,
    scene_rows,
    toml_text,
)
from tests.fakes.discord import (
    AttachmentSpec,
    ChannelSpec,
    FakeDiscord,
    GuildSpec,
    InjectedInteraction,
    MemberSpec,
    RecordedMessage,
    RoleSpec,
    Upload,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDIT_INTERVAL = 0.5
CREATOR = RoleSpec("Creator")
MODERATOR = RoleSpec("Moderator")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "rita")
GUILD = GuildSpec(
    name="Reel Studio",
    channels=[ChannelSpec("general"), ChannelSpec("renders"), ChannelSpec("offtopic")],
    roles=[CREATOR, MODERATOR],
    members=[
        *(MemberSpec(UserSpec(name), roles=[CREATOR]) for name in USERS),
        MemberSpec(UserSpec("mallory")),  # no Creator role
        MemberSpec(UserSpec("mod"), roles=[CREATOR, MODERATOR]),
    ],
)
GENERAL = GUILD.channel("general").id

SCRIPT = """\
# The Lighthouse
negative_prompt: blurry

## Scene 1
image: a red lighthouse
negative: fog
One small scene.

## Scene 2
image: a green sea
Another small scene.

## Scene 3
image: a blue sky
The last small scene.
"""
PROMPTS = ["a red lighthouse", "a green sea", "a blue sky"]


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    speech: FakeSpeech
    bot: BotProcess
    data_dir: Path
    tmp: Path


@dataclass
class Rendered:
    job_id: int
    handle: InjectedInteraction
    progress: RecordedMessage
    reply: RecordedMessage
    upload: Upload | None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-e2e")
    config = tmp / "config.toml"
    config.write_text(
        toml_text(
            {
                "discord": {
                    "guild_ids": [GUILD.id],
                    "allowed_channel_ids": [GENERAL, GUILD.channel("renders").id],
                    "allowed_role_ids": [CREATOR.id],
                    "moderator_role_ids": [MODERATOR.id],
                    "edit_interval": EDIT_INTERVAL,
                },
                "queue": {"max_concurrent_renders": 1, "per_user_limit": 2, "max_total": 20},
                "rate_limit": {"per_user": 3, "per_guild": 100, "window": 3600.0},
            }
        )
    )
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        data_dir = tmp / "data"
        # The fakes' solid-colour images make a video that is nearly all audio; a high audio
        # bitrate gives it a more realistic bitrate, so re-encoding it has room to shrink it.
        env = bot_env(
            fake, together_url=together.base_url, speech_url=speech.base_url,
            data_dir=data_dir, extra={"REELBOT_VIDEO__AUDIO_BITRATE": "320k"},
        )  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, together, speech, bot, data_dir, tmp)
            log = bot.stderr()
            assert await bot.stop() == 0, log  # SIGTERM is a clean stop
        assert fake.token not in log
        assert "Traceback" not in log, log
        assert fake.unhandled == []
        assert fake.server_errors == []


async def start_render(
    world: World,
    member: str,
    script: str | None = SCRIPT,
    filename: str = "lighthouse.md",
    **where: Any,
) -> InjectedInteraction:
    options = {"script": AttachmentSpec(filename, script.encode())} if script is not None else {}
    where.setdefault("channel", "general")
    return await world.fake.send_slash_command("render", options, member=member, **where)


async def delivered(world: World, handle: InjectedInteraction, timeout: float = 90) -> Rendered:
    """Wait for the queued job's video (or its plain-words refusal) and the final embed."""
    fake = world.fake
    await handle.wait_followups(1, timeout=20)
    job_id = job_id_of(handle)

    def finished() -> tuple[RecordedMessage, RecordedMessage] | None:
        for progress in progress_messages(fake, handle.channel_id, job_id):
            replies = replies_to(fake, handle.channel_id, progress.id)
            final = str(embed_of(progress.revisions[-1]).get("description", ""))
            if replies and "**Done**" in final:
                return progress, replies[-1]
        return None

    progress, reply = await fake.wait_for(finished, timeout, f"job {job_id} to be delivered")
    upload = next((u for u in fake.uploads if u.message_id == reply.id), None)
    return Rendered(job_id, handle, progress, reply, upload)


def member_id(name: str) -> int:
    return GUILD.member(name).id


def check_mp4(upload: Upload, tmp: Path) -> float:
    path = tmp / f"{upload.message_id}.mp4"
    path.write_bytes(upload.data)
    probe = ffprobe(path)
    assert probe.stream("video")["codec_name"] == "h264"
    assert probe.stream("audio")["codec_name"] == "aac"
    return probe.duration


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def baseline(world: World) -> Rendered:
    """Alice renders SCRIPT from an attached file; later tests reuse its numbers."""
    handle = await start_render(world, "alice")
    return await delivered(world, handle)


# ------------------------------------------------------------ the main path


async def test_render_from_an_attachment_end_to_end(world: World, baseline: Rendered) -> None:
    fake, handle = world.fake, baseline.handle
    # Answered at once, ephemerally: a "thinking" defer well inside the 3-second deadline.
    response = handle.response
    assert response is not None and response.type == 5 and response.elapsed < 3
    assert response.data.get("flags", 0) & 64
    [queued] = handle.followups
    assert queued.ephemeral and f"job #{baseline.job_id}" in queued.content
    assert handle.payload["data"]["resolved"]["attachments"]  # the script came as a file

    # The progress message is a regular channel message, edited as the scenes progress.
    progress = baseline.progress
    assert progress.interaction_id is None and progress.channel_id == GENERAL
    assert len(progress_messages(fake, GENERAL, baseline.job_id)) == 1
    revisions = progress.revisions
    assert "The Lighthouse" in embed_of(revisions[-1])["title"]
    assert not all_done(revisions[0])  # drawn from the start, not only at the end
    assert all_done(revisions[-1]) and "**Done**" in embed_of(revisions[-1])["description"]
    for number in (1, 2, 3):
        seen = [scene_rows(r)[number].symbols for r in revisions if number in scene_rows(r)]
        assert any(s[2] not in DONE_SYMBOLS for s in seen), f"scene {number} never in progress"
        assert seen[-1] == ("✅", "✅", "✅")
    assert any(
        0 < sum(s in DONE_SYMBOLS for row in scene_rows(r).values() for s in row.symbols) < 9
        for r in revisions
    ), "no partial state was ever drawn"
    gaps = [b.at - a.at for a, b in itertools.pairwise(revisions)]
    # Coalesced: edits are paced at the interval. Measured where they arrive, one gap can
    # shrink when the edit before it was late on a loaded machine, so the pace is checked
    # by the count over the whole span and by the typical gap, not by the smallest one.
    span = revisions[-1].at - revisions[0].at
    assert len(revisions) - 1 <= span / EDIT_INTERVAL + 1, gaps
    assert statistics.median(gaps) >= EDIT_INTERVAL * 0.9, gaps
    final_fields = {f["name"]: f["value"] for f in embed_of(revisions[-1]).get("fields", [])}
    assert final_fields["Video"].startswith("Posted below")

    # A thread on the progress message, one image per scene with its prompt and seed.
    thread = fake.threads[progress.id]
    assert thread.parent_id == GENERAL and f"job {baseline.job_id}" in thread.name
    *images, storyboard = fake.messages[thread.id]  # the scene images, then the storyboard
    assert len(images) == 3 and storyboard.embeds[0]["title"] == "Storyboard"
    seeds = {r.json["prompt"]: r.json["seed"] for r in world.together.requests}
    for number, (message, prompt) in enumerate(zip(images, PROMPTS, strict=True), start=1):
        embed = message.embeds[0]
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert embed["title"] == f"Scene {number}" and embed["description"] == prompt
        assert fields["Seed"] == str(seeds[prompt])
        assert message.attachments[0]["filename"] == f"scene-{number:02d}.png"
    assert {f["name"]: f["value"] for f in images[0].embeds[0]["fields"]}[
        "Negative prompt"
    ] == "blurry, fog"
    # Each image was asked for once; the narration of each scene once.
    assert sorted(r.json["prompt"] for r in world.together.requests) == sorted(PROMPTS)
    assert len(world.speech.requests) == 3

    # The MP4: a reply to the progress message, mentioning the requester, under the limit.
    reply, upload = baseline.reply, baseline.upload
    assert upload is not None and upload.filename.endswith(".mp4")
    assert f"<@{member_id('alice')}>" in reply.content
    mentions = reply.revisions[0].body["allowed_mentions"]
    assert [int(u) for u in mentions["users"]] == [member_id("alice")]
    assert mentions["parse"] == [] and not mentions.get("roles")
    assert upload.size <= handle.payload["attachment_size_limit"]
    assert check_mp4(upload, world.tmp) > 2


async def test_the_modal_path_renders_a_pasted_script(world: World, baseline: Rendered) -> None:
    opened = await start_render(world, "carol", script=None)
    response = await opened.wait_response(timeout=3)
    assert response.type == 9 and response.elapsed < 3  # a modal, at once
    assert opened.modal is not None
    submitted = await world.fake.submit_modal(opened, {"render:script": SCRIPT})
    assert (await submitted.wait_response(timeout=3)).type == 5
    rendered = await delivered(world, submitted)
    assert rendered.upload is not None and check_mp4(rendered.upload, world.tmp) > 2
    assert f"<@{member_id('carol')}>" in rendered.reply.content


# ------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("attachment", "words"),
    [
        (AttachmentSpec("bad.md", b"# T\n## 1\nimage: x\n"), "Line 2 (scene 1)"),
        (AttachmentSpec("notes.pdf", b"%PDF-1.4"), "not a script"),
        (AttachmentSpec("huge.md", b"# T\n", size=5_000_000), "at most 262,144 bytes"),
    ],
)
async def test_a_bad_script_gets_an_ephemeral_error(
    world: World, attachment: AttachmentSpec, words: str
) -> None:
    jobs_before = _job_messages(world)
    handle = await world.fake.send_slash_command(
        "render", {"script": attachment}, member="bob", channel="general"
    )
    response = await handle.wait_response(timeout=3)
    assert response.elapsed < 3
    if response.type == 4:  # refused before any download
        text, flags = response.content or "", response.data.get("flags", 0)
        assert attachment.id not in world.fake.state.cdn_downloads
    else:
        [followup] = await handle.wait_followups(1)
        text, flags = followup.content, followup.flags
    assert words in text and flags & 64, text
    assert "Traceback" not in text
    assert _job_messages(world) == jobs_before  # nothing was queued


async def test_a_member_without_the_role_is_refused(world: World) -> None:
    handle = await start_render(world, "mallory")
    response = await handle.wait_response(timeout=3)
    assert response.type == 4 and response.data["flags"] & 64
    assert "roles to start a render" in (response.content or "")
    assert f"<@&{CREATOR.id}>" in (response.content or "")


async def test_a_channel_outside_the_allowlist_is_refused(world: World) -> None:
    handle = await start_render(world, "alice", channel="offtopic")
    response = await handle.wait_response(timeout=3)
    assert response.type == 4 and response.data["flags"] & 64
    assert "can't be started in this channel" in (response.content or "")


async def test_the_rate_limit_says_when_to_try_again(world: World) -> None:
    short = "# Tiny\n## 1\nimage: a small boat\nA boat.\n"
    for _ in range(3):
        await delivered(world, await start_render(world, "rita", short, "tiny.md"))
    handle = await start_render(world, "rita", short, "tiny.md")
    response = await handle.wait_response(timeout=3)
    text = response.content or ""
    assert response.type == 4 and response.data["flags"] & 64
    assert "You have started 3 renders" in text
    assert re.search(r"another in about \d+ minutes \(<t:\d+:t>\)", text), text


# ------------------------------------------------------------ delivery within the limit


async def test_the_users_nitro_limit_is_not_the_bots_and_a_413_reencodes(
    world: World, baseline: Rendered
) -> None:
    """Dave has Nitro: his interaction says 500 MiB. The bot posts by the guild's limit, and
    when Discord still refuses the file (413: the guild's real limit is smaller than the bot
    could know) it re-encodes smaller once and tries again."""
    assert baseline.upload is not None
    fake = world.fake
    fake.knobs.upload_size_limit = int(baseline.upload.size * 0.8)
    try:
        handle = await start_render(world, "dave", attachment_size_limit=500 * 1024 * 1024)
        rendered = await delivered(world, handle)
    finally:
        fake.knobs.upload_size_limit = None  # back to each guild's own limit
    assert handle.payload["attachment_size_limit"] == 500 * 1024 * 1024
    statuses = [r.status for r in fake.requests_of("create_message_with_files")]
    assert 413 in statuses and statuses[-1] == 200
    assert rendered.upload is not None
    assert rendered.upload.size <= int(baseline.upload.size * 0.8)
    assert check_mp4(rendered.upload, world.tmp) > 2
    assert "Re-encoded to fit" in rendered.reply.content
    final = embed_of(rendered.progress.revisions[-1])
    assert "Re-encoded to fit" in {f["name"]: f["value"] for f in final["fields"]}["Video"]


async def test_a_video_discord_will_not_take_is_kept_and_said_plainly(world: World) -> None:
    world.fake.knobs.upload_size_limit = 30_000  # smaller than any re-encode worth sending
    try:
        rendered = await delivered(world, await start_render(world, "frank"))
    finally:
        world.fake.knobs.upload_size_limit = None
    assert rendered.upload is None
    text = rendered.reply.content
    assert f"<@{member_id('frank')}>" in text and "Discord refused the upload (413" in text
    kept = f"outputs/job-{rendered.job_id}.mp4"
    assert kept in text and (world.data_dir / kept).is_file()


async def test_a_jpeg_image_is_posted_as_a_jpeg(world: World) -> None:
    """Together answers JPEG (here whatever is asked): the thread shows scene-01.jpg, typed
    image/jpeg, and the embed points at that file."""
    script = SCRIPT.replace("red lighthouse", "jpeg harbour").replace("green sea", "jpeg dock")
    script = script.replace("blue sky", "jpeg crane")
    world.together.answer_format = "JPEG"
    try:
        rendered = await delivered(world, await start_render(world, "erin", script))
    finally:
        world.together.answer_format = None
    *images, _storyboard = world.fake.messages[world.fake.threads[rendered.progress.id].id]
    for number, message in enumerate(images, start=1):
        [attachment] = message.attachments
        assert attachment["filename"] == f"scene-{number:02d}.jpg"
        assert attachment["content_type"] == "image/jpeg"
        assert message.embeds[0]["image"]["url"] == f"attachment://scene-{number:02d}.jpg"
    upload = next(u for u in world.fake.uploads if u.message_id == images[0].id)
    assert upload.data[:3] == b"\xff\xd8\xff"  # the bytes are what the name says
    assert rendered.upload is not None and check_mp4(rendered.upload, world.tmp) > 2


# ------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("user", "broken", "headline", "cause", "hint"),
    [
        ("hank", "image", "at scene 1, image stage", "no credit left", "image service failed"),
        ("ivy", "audio", "at scene 1, audio stage", "speech", "narration failed"),
    ],
)
async def test_a_failure_shows_scene_stage_and_what_to_do(
    world: World, user: str, broken: str, headline: str, cause: str, hint: str
) -> None:
    script = f"# Broken\n## 1\nimage: broken {user}\nBroken {user}.\n"
    if broken == "image":
        world.together.script_of_statuses = [402]  # Together.ai: no credit left
    else:
        world.speech.down = True
    try:
        handle = await start_render(world, user, script, "broken.md")
        await handle.wait_followups(1)
        job = job_id_of(handle)
        message = await world.fake.wait_for(
            lambda: next(iter(progress_messages(world.fake, GENERAL, job)), None), 10
        )
        await world.fake.wait_for(lambda: "**Failed**" in _description(message), 30)
    finally:
        world.together.script_of_statuses = []
        world.speech.down = False
    assert headline in _description(message)
    fields = {f["name"]: f["value"] for f in embed_of(message.revisions[-1])["fields"]}
    assert cause in fields["What went wrong"].lower()
    assert hint in fields["What to do"] and "Retry" in fields["What to do"]
    [told] = await world.fake.wait_for(lambda: replies_to(world.fake, GENERAL, message.id), 10)
    assert f"<@{member_id(user)}>" in told.content and "failed" in told.content


# ------------------------------------------------------------ the queue


async def test_queue_status_and_cancel(world: World) -> None:
    fake = world.fake
    world.together.latency = 1.0  # slow images: the first job is surely still running
    try:
        slow = "# Slow\n" + "".join(
            f"## {n}\nimage: slow scene {n}\nScene {n}.\n" for n in range(6)
        )
        first = await start_render(world, "gina", slow, "slow.md")
        await first.wait_followups(1)
        second = await start_render(world, "gina", slow.replace("slow", "later"), "later.md")
        await second.wait_followups(1)
        running, waiting = job_id_of(first), job_id_of(second)

        third = await start_render(world, "gina", SCRIPT)
        [refused] = await third.wait_followups(1)
        assert "already have 2 renders" in refused.content and refused.ephemeral

        shown = await fake.send_slash_command("queue", member="gina")
        queue = (await shown.wait_response(timeout=3)).data["embeds"][0]["description"]
        lines = {int(m[1]): m[0] for m in re.finditer(r"`#(\d+)`.*", queue)}
        assert "🔄" in lines[running] and "rendering" in lines[running]
        assert "#1 in line" in lines[waiting] and "6 scenes" in lines[waiting]
        assert f"<@{member_id('gina')}>" in lines[waiting]

        status = await fake.send_slash_command("status", {"job": waiting}, member="gina")
        fields = (await status.wait_response(timeout=3)).data["embeds"][0]["fields"]
        assert {f["name"]: f["value"] for f in fields}["State"] == "⏳ queued"

        nosy = await fake.send_slash_command("cancel", {"job": running}, member="erin")
        assert "Only the person who started" in ((await nosy.wait_response()).content or "")

        own = await fake.send_slash_command("cancel", {"job": waiting}, member="gina")
        assert f"Cancelled job #{waiting}" in (await own.wait_followups(1))[0].content
        [queued_message] = progress_messages(fake, GENERAL, waiting)
        await fake.wait_for(lambda: "Cancelled" in _description(queued_message), 10)

        moderated = await fake.send_slash_command("cancel", {"job": running}, member="mod")
        [done] = await moderated.wait_followups(1, timeout=10)  # a running render stops promptly
        assert f"Cancelled job #{running}" in done.content
        [running_message] = progress_messages(fake, GENERAL, running)
        await fake.wait_for(lambda: "Cancelled" in _description(running_message), 10)
        assert f"by <@{member_id('mod')}>" in _description(running_message)
        assert not replies_to(fake, GENERAL, running_message.id)  # no video for it
    finally:
        world.together.latency = 0.05


def _description(message: RecordedMessage) -> str:
    return str(embed_of(message.revisions[-1]).get("description", ""))


def _job_messages(world: World) -> int:
    return sum(
        1 for m in world.fake.messages.get(GENERAL, []) if m.embeds and m.interaction_id is None
    )


async def test_429s_on_edits_and_uploads_are_absorbed(world: World) -> None:
    fake = world.fake
    script = SCRIPT.replace("red lighthouse", "grey pier").replace("green sea", "pink dune")
    edits_429 = sum(r.status == 429 for r in fake.requests_of("edit_message"))
    files_429 = sum(r.status == 429 for r in fake.requests_of("create_message_with_files"))
    fake.fail_next("edit_message", 429, retry_after=0.3)
    fake.fail_next("create_message_with_files", 429, retry_after=0.3)
    rendered = await delivered(world, await start_render(world, "hank", script=script))
    assert sum(r.status == 429 for r in fake.requests_of("edit_message")) == edits_429 + 1
    assert (
        sum(r.status == 429 for r in fake.requests_of("create_message_with_files")) == files_429 + 1
    )
    # Nothing was lost to the rate limits: every scene image (and the storyboard), the final
    # state, the video.
    assert len(fake.messages[fake.threads[rendered.progress.id].id]) == 3 + 1
    assert all_done(rendered.progress.revisions[-1])
    assert rendered.upload is not None and check_mp4(rendered.upload, world.tmp) > 2
