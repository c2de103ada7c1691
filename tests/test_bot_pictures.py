"""Pictures in Discord, against the real bot in its own process (fake Discord, Together.ai and
speech servers): the progress embed's thumbnail, the storyboard in the thread, `/timeline`,
and a regenerated scene (a new storyboard, the video joined again from the cache).

The fake image server answers solid colours (`FakeTogether` records each request's colour),
so a storyboard cell is checked by sampling its centre.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image

from pipeline.events import ProgressEvent, event_from_dict
from pipeline.storyboard import storyboard_layout
from pipeline.timeline import WIDTH_PX, cached_marks, timeline_bars, timeline_height
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
    RecordedMessage,
    Upload,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALICE = UserSpec("alice")  # a member of both servers
STUDIO = GuildSpec(name="Picture Studio", members=[MemberSpec(ALICE), MemberSpec(UserSpec("bob"))])
ELSEWHERE = GuildSpec(name="Elsewhere", members=[MemberSpec(ALICE)])
CHANNEL = STUDIO.channels[0].id
EPHEMERAL = 64
PROMPTS = ["a paper boat", "a stone bridge", "a wooden mill"]
SCRIPT = "# Pictures\n" + "".join(
    f"## {n}\nimage: {prompt}\nScene {n} of the pictures.\n" for n, prompt in enumerate(PROMPTS, 1)
)
Colour = tuple[int, int, int]


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    bot: BotProcess
    data_dir: Path
    bot_tmp: Path


@dataclass
class Rendered:
    job_id: int
    progress: RecordedMessage
    thread_id: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-pictures")
    config = tmp / "config.toml"
    discord = {"guild_ids": [STUDIO.id, ELSEWHERE.id], "edit_interval": 0.3}
    config.write_text(toml_text({"discord": discord}))
    bot_tmp = tmp / "bot-tmp"  # the bot's temporary files: the storyboard, the timeline
    bot_tmp.mkdir()
    async with (
        FakeDiscord(guilds=[STUDIO, ELSEWHERE]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp / "data", extra={"TMPDIR": str(bot_tmp)})  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, together, bot, tmp / "data", bot_tmp)
            log = bot.stderr()
            assert await bot.stop() == 0, log
        assert "Traceback" not in log, log
        assert fake.unhandled == [] and fake.server_errors == []


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rendered(world: World) -> Rendered:
    fake = world.fake
    handle = await fake.send_slash_command(
        "render", {"script": AttachmentSpec("pictures.md", SCRIPT.encode())}, member="alice"
    )
    await handle.wait_followups(1, timeout=20)
    job_id = job_id_of(handle)
    [progress] = await fake.wait_for(lambda: progress_messages(fake, CHANNEL, job_id), 10)
    await videos(world, progress, 1)
    await fake.wait_for(lambda: job_state(world, job_id) == "done", 20, "the job to be done")
    return Rendered(job_id, progress, fake.threads[progress.id].id)


# ------------------------------------------------------------ helpers


async def videos(world: World, progress: RecordedMessage, count: int) -> list[RecordedMessage]:
    def posted() -> list[RecordedMessage]:
        return [m for m in replies_to(world.fake, CHANNEL, progress.id) if m.attachments]

    def done() -> list[RecordedMessage] | None:
        found = posted()
        return found if len(found) >= count and all_done(progress.revisions[-1]) else None

    found: list[RecordedMessage] = await world.fake.wait_for(done, 90, f"video {count}")
    return found


def job_state(world: World, job_id: int) -> str:
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        (state,) = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return str(state)


def stored_events(world: World, job_id: int) -> list[ProgressEvent]:
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        (events,) = db.execute("SELECT events FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return [event_from_dict(item) for item in json.loads(events)]


def scene_messages(world: World, job: Rendered) -> list[RecordedMessage]:
    """The scene messages in the thread, in the order they were posted."""
    return [
        m
        for m in world.fake.messages[job.thread_id]
        if m.embeds and str(m.embeds[0].get("title", "")).startswith("Scene ")
        and not m.content  # not the copy of a replaced version
    ]  # fmt: skip


def storyboards(world: World, job: Rendered) -> list[RecordedMessage]:
    return [
        m
        for m in world.fake.messages[job.thread_id]
        if m.embeds and str(m.embeds[0].get("title", "")).startswith("Storyboard")
    ]


def upload_of(world: World, message: RecordedMessage) -> Upload:
    [upload] = [u for u in world.fake.uploads if u.message_id == message.id]
    return upload


def colour_of(world: World, prompt: str) -> Colour:
    """The colour the fake image server answered for the latest request with `prompt`."""
    [*_, request] = [r for r in world.together.requests if r.json["prompt"] == prompt and r.colour]
    assert request.colour is not None
    return request.colour


def cell_colours(world: World, board: RecordedMessage) -> list[Colour]:
    """The average colour at the centre of each storyboard cell, scene 1 first."""
    request = world.together.requests[0].json
    layout = storyboard_layout(len(PROMPTS), (request["width"], request["height"]))
    with Image.open(io.BytesIO(upload_of(world, board).data)) as sheet:
        assert sheet.format == "JPEG" and sheet.size == (layout.width, layout.height)
        colours = []
        for index in range(len(PROMPTS)):
            x, y = layout.centre(index)
            patch = sheet.convert("RGB").crop((x - 6, y - 6, x + 6, y + 6))
            pixel = patch.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
            assert isinstance(pixel, tuple)
            colours.append((int(pixel[0]), int(pixel[1]), int(pixel[2])))
    return colours


def close(a: Colour, b: Colour, tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def thumbnails(progress: RecordedMessage) -> list[str | None]:
    return [embed_of(r).get("thumbnail", {}).get("url") for r in progress.revisions]


async def said(handle: InjectedInteraction) -> str:
    response = await handle.wait_response(timeout=3)
    if response.type == 5:
        [followup] = await handle.wait_followups(1, timeout=20)
        return followup.content
    return response.content or ""


def leftovers(world: World) -> list[str]:
    return [p.name for p in world.bot_tmp.iterdir() if p.name.startswith("reelbot-")]


# ------------------------------------------------------------ the progress embed


async def test_the_thumbnail_is_the_newest_image_already_in_the_thread(
    world: World, rendered: Rendered
) -> None:
    scenes = scene_messages(world, rendered)
    assert [m.embeds[0]["title"] for m in scenes] == ["Scene 1", "Scene 2", "Scene 3"]
    posted = [m.attachments[0]["url"] for m in scenes]
    shown = thumbnails(rendered.progress)
    assert shown[0] is None  # nothing to show before the first image
    # Only images of the thread (edits are coalesced: some may be skipped), and the final
    # state shows the newest one.
    assert {url for url in shown if url} <= set(posted)
    assert shown[-1] == posted[-1]
    # The thumbnail points at the thread's attachment: no edit uploads anything.
    assert not any(r.uploads for r in rendered.progress.revisions)


# ------------------------------------------------------------ the storyboard


async def test_the_storyboard_follows_the_images_once(world: World, rendered: Rendered) -> None:
    thread = world.fake.messages[rendered.thread_id]
    [board] = storyboards(world, rendered)
    assert thread.index(board) == len(scene_messages(world, rendered))  # after every image
    assert board.embeds[0]["title"] == "Storyboard"
    assert upload_of(world, board).filename == "storyboard.jpg"
    for number, (seen, prompt) in enumerate(
        zip(cell_colours(world, board), PROMPTS, strict=True), 1
    ):
        assert close(seen, colour_of(world, prompt)), f"cell {number}: {seen}"
    # The sheet was made in a temporary folder, removed once it was sent.
    await world.fake.wait_for(lambda: leftovers(world) == [], 10, "no temporary files")


# ------------------------------------------------------------ /timeline


async def test_timeline_posts_the_chart_of_the_stored_events(
    world: World, rendered: Rendered
) -> None:
    handle = await world.fake.send_slash_command("timeline", {"job": rendered.job_id}, member="bob")
    response = await handle.wait_response(timeout=3)
    assert response.type == 5 and not response.data.get("flags", 0) & EPHEMERAL  # public
    [message] = await handle.wait_followups(1, timeout=30)
    upload = upload_of(world, message)
    assert upload.filename == f"timeline-job-{rendered.job_id}.png"
    with Image.open(io.BytesIO(upload.data)) as chart:
        assert chart.format == "PNG"
        assert chart.size == (WIDTH_PX, timeline_height(len(PROMPTS) + 1)) == (1600, 575)

    # What it says it drew is what the stored events hold: 3 scenes × (audio, image, clip)
    # and the join, all made (nothing was in the cache yet).
    events = stored_events(world, rendered.job_id)
    ran = [bar for bar in timeline_bars(events) if not bar.is_wait]
    assert len(ran) == 3 * 3 + 1 and cached_marks(events) == []
    assert f"{len(ran)} stages run, 0 reused from the cache" in message.content
    assert f"job #{rendered.job_id}" in message.content
    await world.fake.wait_for(lambda: leftovers(world) == [], 10, "no temporary files")


async def test_timeline_refuses_what_it_cannot_show(world: World, rendered: Rendered) -> None:
    fake = world.fake
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        never_ran = db.execute(
            "INSERT INTO jobs (guild_id, channel_id, user_id, script, filename, options, title,"
            " scene_count, state, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (STUDIO.id, CHANNEL, ALICE.id, "# T\n## 1\nA.\n", "t.md", "{}", "T", 1,
             "cancelled", time.time()),
        ).lastrowid  # fmt: skip
    asks = [
        (rendered.job_id, ELSEWHERE, f"no job #{rendered.job_id} on this server"),
        (999_999, STUDIO, "no job #999999 on this server"),
        (never_ran, STUDIO, f"Job #{never_ran} has no render to draw yet"),
    ]
    for job, guild, words in asks:
        handle = await fake.send_slash_command("timeline", {"job": job}, member="alice",
                                               guild=guild)  # fmt: skip
        response = await handle.wait_response(timeout=3)
        assert response.type == 4 and response.data["flags"] & EPHEMERAL, response
        assert words in (response.content or ""), response.content
        assert not response.uploads


async def test_timeline_of_a_failed_render(world: World) -> None:
    fake = world.fake
    script = "# Broken\n## 1\nimage: a broken kite\nOne.\n## 2\nimage: a torn sail\nTwo.\n"
    world.together.script_of_statuses = [402]  # Together.ai: no credit left
    try:
        handle = await fake.send_slash_command(
            "render", {"script": AttachmentSpec("broken.md", script.encode())}, member="bob"
        )
        await handle.wait_followups(1, timeout=20)
        job_id = job_id_of(handle)
        await fake.wait_for(lambda: job_state(world, job_id) == "failed", 30, "the failure")
    finally:
        world.together.script_of_statuses = []
    handle = await fake.send_slash_command("timeline", {"job": job_id}, member="bob")
    [message] = await handle.wait_followups(1, timeout=30)
    with Image.open(io.BytesIO(upload_of(world, message).data)) as chart:
        assert chart.size == (WIDTH_PX, timeline_height(2 + 1))
    assert "The render failed" in message.content


# ------------------------------------------------------------ a regenerated scene


async def test_a_regenerated_scene_gets_a_new_storyboard_and_video(
    world: World, rendered: Rendered
) -> None:
    fake = world.fake
    before = [colour_of(world, prompt) for prompt in PROMPTS]
    [_, second, _] = scene_messages(world, rendered)
    regen = next(
        c["custom_id"]
        for row in second.components
        for c in row["components"]
        if c["custom_id"].startswith("reelbot:regen:")
    )
    answer = await said(await fake.click_button(second, regen, member="alice"))
    assert answer.startswith("Regenerating scene 2"), answer

    # Joined again from the cache (the first video's file was removed after delivery).
    [_, reply] = await videos(world, rendered.progress, 2)
    assert "Version 2: scene 2 changed." in reply.content
    boards = await fake.wait_for(lambda: len(storyboards(world, rendered)) == 2, 20)
    assert boards
    updated = storyboards(world, rendered)[-1]
    assert updated.embeds[0]["title"] == "Storyboard (updated)"
    after = colour_of(world, PROMPTS[1])
    assert after != before[1]
    expected = [before[0], after, before[2]]
    for number, (seen, colour) in enumerate(
        zip(cell_colours(world, updated), expected, strict=True), 1
    ):
        assert close(seen, colour), f"cell {number}: {seen}, expected {colour}"

    # The progress message shows the new image of scene 2, from its edited message.
    await fake.wait_for(lambda: thumbnails(rendered.progress)[-1] == second.attachments[0]["url"])
    await fake.wait_for(lambda: job_state(world, rendered.job_id) == "done", 20)
    outputs = world.data_dir / "outputs"
    assert not list(outputs.glob(f"*job-{rendered.job_id}.*"))
    await fake.wait_for(lambda: leftovers(world) == [], 10, "no temporary files")
