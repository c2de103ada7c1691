"""The progress message piece by piece: the embed, the edit coalescer, and the Discord message
(edited, replaced when Discord stops allowing edits) against the fake Discord, in-process."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import discord
import pytest

from bot.config import DiscordConfig
from bot.progress_embed import (
    FailureView,
    Phase,
    ProgressView,
    SceneLine,
    build_embed,
    scene_lines,
    view_of,
)
from bot.progress_message import EditCoalescer, ProgressMessage
from bot.store import Job, JobOptions, NewScene, Store
from pipeline.events import JobFailed, JobStarted, RetryWait, SceneEvent, Stage, Status
from pipeline.progress import RenderProgress
from tests.botproc import scene_rows
from tests.fakes.discord import FakeDiscord, GuildSpec, Revision

from .clock import ManualClock

S = Status
NOW = 1_750_075_200.0  # the wall clock the embeds are drawn at


def view(scenes: list[SceneLine], **extra: object) -> ProgressView:
    fields: dict[str, object] = {
        "job_id": 7,
        "title": "Lighthouse",
        "user_id": 42,
        "phase": Phase.RUNNING,
        "scenes": tuple(scenes),
        "started_at": NOW - 75,
        "fraction": 0.5,
        "remaining": 30.0,
    }
    return ProgressView(**(fields | extra))  # type: ignore[arg-type]


def as_revision(embed: discord.Embed) -> Revision:
    return Revision(0.0, "", {"embeds": [embed.to_dict()]})


# ------------------------------------------------------------ the embed


def test_each_scene_shows_each_stage_with_a_symbol() -> None:
    embed = build_embed(
        view(
            [
                SceneLine(1, (S.DONE, S.CACHED, S.DONE)),
                SceneLine(2, (S.DONE, S.STARTED, S.WAITING)),
                SceneLine(3, (S.STARTED, S.WAITING, None)),
            ]
        ),
        NOW,
    )
    rows = scene_rows(as_revision(embed))
    assert rows[1].symbols == ("✅", "☑️", "✅")
    assert rows[2].symbols == ("✅", "🔄", "⏳")
    assert rows[3].symbols == ("🔄", "⏳", "▫️")
    assert embed.description is not None
    assert "`▰▰▰▰▰▰▱▱▱▱▱▱` 50 %" in embed.description
    assert "1 min 15 s elapsed · about 30 s left" in embed.description
    assert "<@42>" in embed.description and embed.title == "🎬 Lighthouse"
    assert embed.footer.text is not None and embed.footer.text.startswith("job #7 ·")


def test_a_failure_names_the_scene_the_stage_and_what_to_do() -> None:
    progress = RenderProgress()
    for event in (
        JobStarted(0, "Lighthouse", 2),
        SceneEvent(0.1, 2, Stage.AUDIO, Status.DONE),
        SceneEvent(0.2, 2, Stage.IMAGE, Status.FAILED, message="Together.ai: no credit left"),
        JobFailed(0.3, "scene 2, image: Together.ai: no credit left", 2, Stage.IMAGE),
    ):
        progress.apply(event)
    job = _job(scene_count=2)
    embed = build_embed(view_of(progress, job, Phase.FAILED, started_at=NOW), NOW)
    assert embed.description is not None
    assert "❌ **Failed** at scene 2, image stage" in embed.description
    assert scene_rows(as_revision(embed))[2].symbols == ("✅", "❌", "▫️")
    fields = {f.name: f.value for f in embed.fields}
    assert "no credit left" in str(fields["What went wrong"])
    assert "image service" in str(fields["What to do"])


def test_a_rate_limit_wait_is_shown_on_its_scene_until_the_image_moves_on() -> None:
    progress = RenderProgress()
    waiting = "waiting for Together's rate limit (40 s)"
    for event in (
        JobStarted(0, "Lighthouse", 2),
        SceneEvent(0.1, 1, Stage.IMAGE, Status.STARTED),
        RetryWait(0.2, 1, Stage.IMAGE, 40.0, waiting),
    ):
        progress.apply(event)
    job = _job(scene_count=2)
    embed = build_embed(view_of(progress, job, Phase.RUNNING, started_at=NOW), NOW)
    assert embed.description is not None
    assert f"🔄 ▫️ — {waiting}" in embed.description
    progress.apply(SceneEvent(40.5, 1, Stage.IMAGE, Status.DONE))
    embed = build_embed(view_of(progress, job, Phase.RUNNING, started_at=NOW), NOW + 41)
    assert embed.description is not None and "rate limit" not in embed.description


def test_a_queued_job_shows_its_scenes_still_to_do() -> None:
    embed = build_embed(view_of(RenderProgress(), _job(scene_count=4), Phase.QUEUED), NOW)
    assert embed.description is not None and "Queued" in embed.description
    assert "▰" not in embed.description  # no bar before it starts
    assert [r.symbols for r in scene_rows(as_revision(embed)).values()] == [("▫️",) * 3] * 4


def test_a_queued_job_says_its_place_and_when_it_should_start() -> None:
    job = _job(scene_count=2)
    embed = build_embed(view_of(RenderProgress(), job, Phase.QUEUED, place=(2, 95.0, 140.0)), NOW)
    assert embed.description is not None
    assert "⏳ **Queued** — 2nd in line" in embed.description
    assert "starts in about 1 min 35 s · done in about 2 min 20 s" in embed.description
    embed = build_embed(view_of(RenderProgress(), job, Phase.QUEUED, place=(1, 30.0, 70.0)), NOW)
    assert embed.description is not None and "— next in line" in embed.description


def test_the_headline_only_moves_forward() -> None:
    """Rendering → Joining the clips, which stays until the upload (never "Rendering" again)."""
    progress = RenderProgress()
    job = _job(scene_count=1)
    headlines = []
    for event in (
        JobStarted(0, "Lighthouse", 1),
        SceneEvent(0.1, 1, Stage.AUDIO, Status.DONE),
        SceneEvent(0.2, 1, Stage.IMAGE, Status.DONE),
        SceneEvent(0.3, 1, Stage.CLIP, Status.DONE),
        SceneEvent(0.4, 0, Stage.JOIN, Status.STARTED),
        SceneEvent(0.5, 0, Stage.JOIN, Status.DONE),
    ):
        progress.apply(event)
        embed = build_embed(view_of(progress, job, Phase.RUNNING, started_at=NOW), NOW)
        assert embed.description is not None
        headlines.append(embed.description.splitlines()[0])
    for phase in (Phase.DELIVERING, Phase.DONE):
        embed = build_embed(view_of(progress, job, phase, started_at=NOW), NOW)
        assert embed.description is not None
        headlines.append(embed.description.splitlines()[0])
    order = ["🔄 **Rendering**", "🔄 **Joining the clips**", "📤 **Uploading the video**",
             "✅ **Done**"]  # fmt: skip
    ranks = [order.index(h) for h in headlines]
    assert ranks == sorted(ranks) and ranks[-1] == 3, headlines


def test_the_runners_estimate_is_what_the_message_says() -> None:
    progress = RenderProgress()
    progress.apply(JobStarted(0, "Lighthouse", 2))
    job = _job(scene_count=2)
    embed = build_embed(
        view_of(progress, job, Phase.RUNNING, started_at=NOW - 10, remaining=83.0), NOW
    )
    assert embed.description is not None and "10 s elapsed · about 1 min 23 s left" in (
        embed.description
    )
    embed = build_embed(view_of(progress, job, Phase.RUNNING, started_at=NOW, remaining=0.4), NOW)
    assert embed.description is not None and "· almost done" in embed.description


@pytest.mark.parametrize("count", [60, 400, 5000])
def test_many_scenes_stay_within_discord_limits(count: int) -> None:
    states = (S.DONE, S.STARTED, S.WAITING, None)
    scenes = [
        SceneLine(n, (S.DONE, states[(n // 7) % 4], states[(n // 3) % 4]), "x" * (n % 2) * 300)
        for n in range(1, count + 1)
    ]
    embed = build_embed(
        view(
            scenes,
            phase=Phase.FAILED,
            failure=FailureView("y" * 3000, 3, Stage.CLIP),
            note="z" * 3000,
        ),
        NOW,
    )
    assert embed.description is not None and len(embed.description) <= 4096
    assert len(embed) <= 6000 and len(embed.fields) <= 25
    assert all(len(str(f.value)) <= 1024 for f in embed.fields)


def test_scene_runs_in_the_same_state_are_compressed_into_ranges() -> None:
    done = [SceneLine(n, (S.DONE, S.DONE, S.DONE)) for n in range(1, 41)]
    rest = [SceneLine(n, (S.STARTED, None, None)) for n in range(41, 61)]
    lines = scene_lines(done + rest, budget=200)
    assert lines == ["`1–40` ✅ ✅ ✅", "`41–60` 🔄 ▫️ ▫️"]
    many = [SceneLine(n, (S.DONE, S.DONE, S.DONE if n % 2 else None)) for n in range(1, 300)]
    lines = scene_lines(many, budget=300)
    assert lines[-1].startswith("… and ") and sum(len(x) + 1 for x in lines) <= 300


# ------------------------------------------------------------ the coalescer


async def test_a_burst_of_states_is_drawn_calmly_and_the_last_one_wins() -> None:
    clock = ManualClock()
    drawn: list[tuple[float, int]] = []

    async def draw(state: int) -> None:
        drawn.append((clock(), state))

    coalescer = EditCoalescer(draw, interval=0.2, clock=clock, sleep=clock.sleep)
    start = clock()
    for state in range(60):
        coalescer.update(state)
        await clock.advance(0.01)
    closing = asyncio.create_task(coalescer.close(999))
    await clock.until_done(closing, step=0.01, at_most=1.0)
    assert drawn[0][0] == pytest.approx(start, abs=0.15) and drawn[0][1] == 0  # at once
    assert drawn[-1][1] == 999  # the final state, always
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(drawn)]
    assert min(gaps) >= 0.19
    assert len(drawn) <= 2 + (drawn[-1][0] - start) / 0.2
    assert [s for _, s in drawn] == sorted(s for _, s in drawn)  # never an older state
    coalescer.update(1000)  # after close: ignored
    await clock.advance(0.05)
    assert drawn[-1][1] == 999


async def test_a_failed_draw_does_not_stop_the_next_ones() -> None:
    drawn: list[str] = []

    async def draw(state: str) -> None:
        if state == "bad":
            raise discord.DiscordException("boom")
        drawn.append(state)

    clock = ManualClock()
    coalescer = EditCoalescer(draw, interval=0.05, clock=clock, sleep=clock.sleep)
    coalescer.update("bad")
    await coalescer.wait_drawn()
    coalescer.update("good")
    closing = asyncio.create_task(coalescer.close("final"))
    await clock.until_done(closing, step=0.01, at_most=1.0)
    assert drawn[-1] == "final" and "bad" not in drawn


async def test_a_draw_cut_off_by_the_connection_is_a_warning_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shutdown can close the HTTP session under an edit in flight: not a bug to log in full."""
    drawn: list[str] = []

    async def draw(state: str) -> None:
        if state == "cut":
            raise aiohttp.ServerDisconnectedError()
        drawn.append(state)

    coalescer = EditCoalescer(draw, interval=0.05, name="progress-job-1")
    coalescer.update("cut")
    await coalescer.wait_drawn()
    await coalescer.close("final")
    assert drawn == ["final"]
    [record] = [r for r in caplog.records if r.name == "bot.progress_message"]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "progress-job-1: drawing failed (Server disconnected)" in record.getMessage()


# ------------------------------------------------------------ the Discord message


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(guilds=[GuildSpec()]) as server:
        server.install()
        yield server
        assert server.unhandled == [] and server.server_errors == []


@pytest.fixture
async def client(fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    client = discord.Client(intents=discord.Intents.none())
    await client.login(fake.token)  # REST only: the progress message needs no gateway
    yield client
    await client.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "bot.sqlite3") as opened:
        yield opened


async def _stored_job(store: Store, fake: FakeDiscord) -> Job:
    guild = fake.guilds[0]
    return await store.create_job(
        guild_id=guild.id, channel_id=guild.channels[0].id, user_id=42, script="-",
        filename="s.md", options=JobOptions(), title="Lighthouse",
        scenes=[NewScene(1, 5, "red", "")],
    )  # fmt: skip


async def test_an_uneditable_message_is_replaced_and_recorded(
    fake: FakeDiscord, client: discord.Client, store: Store
) -> None:
    job = await _stored_job(store, fake)
    config = DiscordConfig(edit_interval=0.2)
    message = ProgressMessage(client, store, job, config)
    message.show(view([SceneLine(1, (None, None, None))], job_id=job.id))
    first = await message.posted()
    assert first is not None

    fake.fail_next("edit_message", 429, retry_after=0.3)  # absorbed by discord.py
    message.show(view([SceneLine(1, (S.DONE, None, None))], job_id=job.id))
    await fake.wait_for(lambda: fake.message(first).edits, 5, "the edit after the 429")

    fake.limit_old_message_edits(older_than=0.0)  # Discord: error 30046 from now on
    await message.close(view([SceneLine(1, (S.DONE, S.DONE, S.DONE))], job_id=job.id))
    assert message.message_id not in (None, first) and message.replaced == 1
    recorded = await store.get_job(job.id)
    assert recorded is not None and recorded.progress_message_id == message.message_id
    new = fake.message(message.message_id)
    assert [r.symbols for r in scene_rows(new.revisions[-1]).values()] == [("✅",) * 3]
    statuses = [r.status for r in fake.requests_of("edit_message")]
    assert statuses == [429, 200, 400]


async def test_a_message_older_than_the_max_age_is_replaced_without_trying(
    fake: FakeDiscord, client: discord.Client, store: Store
) -> None:
    job = await _stored_job(store, fake)
    channel = client.get_partial_messageable(job.channel_id)
    old = await channel.send("an old progress message")
    await store.set_progress_message(job.id, old.id, time.time() - 3600)
    reloaded = await store.get_job(job.id)
    assert reloaded is not None
    message = ProgressMessage(client, store, reloaded, DiscordConfig(message_max_age=50 * 60))
    await message.close(view([SceneLine(1, (S.DONE, None, None))], job_id=job.id))
    assert message.message_id != old.id
    assert fake.requests_of("edit_message") == []  # no edit was even tried


def _job(scene_count: int) -> Job:
    return Job(
        id=7, guild_id=1, channel_id=2, user_id=42, script="", filename="s.md",
        options=JobOptions(), title="Lighthouse", scene_count=scene_count, state="queued",  # type: ignore[arg-type]
        created_at=0.0, started_at=None, finished_at=None, error=None, output=None,
        progress_message_id=None, progress_posted_at=None, thread_id=None, events=None,
    )  # fmt: skip
