"""Limits, usage and forgetting, end to end: the real bot in its own process against the fake
Discord, Together.ai and speech servers.

A crowd taps /render at once (one person five times, eight others once each); the server's
hourly rate allows eight. Exactly eight are queued, every refusal names its limit and when to
try again, and every accepted job is delivered once. Then /usage, /forget, and [storage]
keep_days across a restart (which also shows the rate window survives it).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.botproc import (
    BotProcess,
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
    RoleSpec,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODERATOR = RoleSpec("Moderator")
CROWD = ("bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy")
GUILD = GuildSpec(
    name="Busy Studio",
    roles=[MODERATOR],
    members=[
        *(MemberSpec(UserSpec(name)) for name in ("alice", *CROWD, "jack")),
        MemberSpec(UserSpec("mod"), roles=[MODERATOR]),
    ],
)
CHANNEL = GUILD.channels[0].id
EPHEMERAL = 64
PER_USER, PER_GUILD = 3, 8
USER_RATE = f"You have started {PER_USER} renders in the last 60 minutes, the limit."
SERVER_RATE = f"This server has started {PER_GUILD} renders in the last 60 minutes, the limit."
TRY_AGAIN = re.compile(r"You can start another in about \d+ minutes \(<t:\d+:t>\)\.$")


@dataclass
class Answer:
    member: str
    handle: InjectedInteraction
    text: str
    job_id: int | None  # queued as this job; None: refused


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    config: Path
    env: dict[str, str]
    tmp: Path
    bot: BotProcess
    bots: list[BotProcess] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp / "data" / "bot.sqlite3"

    def accepted(self) -> list[Answer]:
        return [a for a in self.answers if a.job_id is not None]

    async def restart(self, between: Any = None) -> None:
        """SIGTERM the bot (a clean stop), run `between()`, start a new process."""
        assert await self.bot.stop() == 0, self.bot.stderr()
        if between is not None:
            between()
        self.bot = BotProcess(self.fake, self.config, self.env,
                              self.tmp / f"bot-{len(self.bots) + 1}.log")  # fmt: skip
        self.bots.append(self.bot)
        await self.bot.start()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-limits")
    config = tmp / "config.toml"
    config.write_text(
        toml_text(
            {
                "discord": {"guild_ids": [GUILD.id], "moderator_role_ids": [MODERATOR.id],
                            "edit_interval": 0.3},
                "queue": {"max_concurrent_renders": 1, "per_user_limit": 3, "max_total": 20},
                "rate_limit": {"per_user": PER_USER, "per_guild": PER_GUILD, "window": 3600.0},
                "storage": {"keep_days": 30},
            }
        )
    )  # fmt: skip
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp / "data")  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot-1.log") as bot:
            world = World(fake, together, config, env, tmp, bot, [bot])
            try:
                yield world
            except BaseException:
                for run in world.bots[1:]:
                    print(f"---- {run.log.name} ----\n{run.stderr()}")
                raise
            finally:
                assert await world.bot.stop() == 0
        for run in world.bots:
            assert "Traceback" not in run.stderr(), run.stderr()
        assert fake.unhandled == [] and fake.server_errors == []


def one_scene(member: str, n: int) -> AttachmentSpec:
    text = f"# {member} {n}\n## 1\nimage: {member} burst picture {n}\nWords of {member}, {n}.\n"
    return AttachmentSpec(f"{member}-{n}.md", text.encode())


async def said(handle: InjectedInteraction) -> str:
    """What the bot answered, ephemerally (at once, or after a "thinking…" defer); every
    interaction is answered within Discord's 3 seconds."""
    response = await handle.wait_response(timeout=3)
    assert response.elapsed < 3
    if response.type == 5:
        [followup] = await handle.wait_followups(1, timeout=30)
        assert followup.ephemeral
        return followup.content
    assert response.type == 4 and response.data["flags"] & EPHEMERAL
    return response.content or ""


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def description(message: RecordedMessage) -> str:
    return str(embed_of(message.revisions[-1]).get("description", ""))


def videos(world: World, job_id: int) -> list[RecordedMessage]:
    """The replies carrying this job's MP4 (none before its progress message is posted)."""
    return [m for progress in progress_messages(world.fake, CHANNEL, job_id)
            for m in replies_to(world.fake, CHANNEL, progress.id)
            if any(a["filename"].endswith(f"-{job_id}.mp4") for a in m.attachments)]  # fmt: skip


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        found = list(conn.execute(sql, params))
    conn.close()
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def burst(world: World) -> World:
    """Thirteen /render at once: alice five times, the crowd once each."""
    fake = world.fake
    taps = [("alice", n) for n in range(5)] + [(name, 0) for name in CROWD]
    handles = await asyncio.gather(
        *(fake.send_slash_command("render", {"script": one_scene(m, n)}, member=m)
          for m, n in taps)
    )  # fmt: skip
    texts = await asyncio.gather(*(said(h) for h in handles))
    for (member, _), handle, text in zip(taps, handles, texts, strict=True):
        job = job_id_of(handle) if text.startswith("Queued as **job #") else None
        world.answers.append(Answer(member, handle, text, job))

    async def delivered(job_id: int) -> None:
        await fake.wait_for(lambda: videos(world, job_id) or None, 120, f"job {job_id}'s video")

    await asyncio.gather(*(delivered(a.job_id) for a in world.accepted() if a.job_id))

    def all_done() -> bool:
        [(done,)] = rows(world.db, "SELECT COUNT(*) FROM jobs WHERE state = 'done'")
        return int(done) == len(world.accepted())

    await fake.wait_for(all_done, 60, "every accepted job to be done")
    return world


# ------------------------------------------------------------ the burst


async def test_a_burst_of_render_gets_exactly_the_server_rate(burst: World) -> None:
    world = burst
    accepted, refused = world.accepted(), [a for a in world.answers if a.job_id is None]
    assert len(accepted) == PER_GUILD, [a.text for a in world.answers]
    assert len(refused) == len(world.answers) - PER_GUILD
    assert sum(a.member == "alice" for a in accepted) <= PER_USER
    for answer in refused:  # each names the limit it hit and when to try again
        assert answer.text.startswith((USER_RATE, SERVER_RATE)), answer.text
        assert TRY_AGAIN.search(answer.text), answer.text
        assert answer.member == "alice" or answer.text.startswith(SERVER_RATE)
    # The store agrees: eight jobs, eight admissions.
    assert rows(world.db, "SELECT COUNT(*) FROM jobs") == [(PER_GUILD,)]
    assert rows(world.db, "SELECT COUNT(*) FROM admissions WHERE kind = 'render'") == [(PER_GUILD,)]
    # Every accepted job was delivered exactly once: one progress message, one video.
    for answer in accepted:
        assert answer.job_id is not None
        assert len(progress_messages(world.fake, CHANNEL, answer.job_id)) == 1
        [video] = videos(world, answer.job_id)
        assert f"<@{GUILD.member(answer.member).id}>" in video.content
    assert len({a.job_id for a in accepted}) == PER_GUILD
    mp4s = [u for u in world.fake.uploads if u.filename.endswith(".mp4")]
    assert len(mp4s) == PER_GUILD  # no video was posted twice
    # Each job's one image was asked for once.
    prompts = [r.json["prompt"] for r in world.together.requests if r.status == 200]
    assert len(prompts) == len(set(prompts)) == PER_GUILD


# ------------------------------------------------------------ /usage


async def test_usage_shows_the_server_and_your_own_and_each_person_to_moderators(
    burst: World,
) -> None:
    fake = burst.fake
    viewer = burst.accepted()[0].member
    mine = sum(a.member == viewer for a in burst.accepted())
    handle = await fake.send_slash_command("usage", member=viewer)
    response = await handle.wait_response(timeout=3)
    assert response.type == 4 and response.data["flags"] & EPHEMERAL
    [embed] = response.data["embeds"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "Usage in Busy Studio"
    assert fields["Today"].startswith(f"🖼️ **{PER_GUILD} images** · 🎬 **{PER_GUILD} renders**")
    assert f"{1000 - PER_GUILD:,} of its 1,000 images left today" in fields["Today"]
    assert fields["This month"] == f"🖼️ **{PER_GUILD} images** · 🎬 **{PER_GUILD} renders**"
    assert fields["You"].startswith(
        f"Today: 🖼️ **{plural(mine, 'image')}** · 🎬 **{plural(mine, 'render')}**\nThis month: "
    )
    assert f"{200 - mine} of your 200 images left today" in fields["You"]
    assert "By person, this month" not in fields  # only moderators see everyone

    moderated = await fake.send_slash_command("usage", member="mod")
    [embed] = (await moderated.wait_response(timeout=3)).data["embeds"]
    people = {f["name"]: f["value"] for f in embed["fields"]}["By person, this month"]
    lines = people.splitlines()
    assert len(lines) == len({a.member for a in burst.accepted()})
    [line] = [line for line in lines if f"<@{GUILD.member(viewer).id}>" in line]
    assert (
        f"{plural(mine, 'image')} ({mine} today) · {plural(mine, 'render')} ({mine} today)" in line
    )
    counts = [int(re.search(r"· (\d+) image", line)[1]) for line in lines]  # type: ignore[index]
    assert counts == sorted(counts, reverse=True)  # most images first


# ------------------------------------------------------------ /forget


async def test_forget_removes_the_files_and_the_posts_and_says_so(burst: World) -> None:
    world, fake = burst, burst.fake
    answer = world.accepted()[0]
    job_id, owner = answer.job_id, answer.member
    assert job_id is not None
    nosy_member = next(m for m in ("alice", *CROWD) if m != owner)
    [(thread_id,)] = rows(world.db, "SELECT thread_id FROM jobs WHERE id = ?", job_id)
    [(image, audio, clip, message_id)] = rows(
        world.db, "SELECT image, audio, clip, image_message_id FROM scenes WHERE job_id = ?",
        job_id,
    )  # fmt: skip
    [video] = videos(world, job_id)
    assert message_id in {m.id for m in fake.messages[thread_id] if not m.deleted}
    assert all(Path(p).is_file() for p in (image, audio, clip))

    nosy = await said(await fake.send_slash_command("forget", {"job": job_id},
                                                    member=nosy_member))  # fmt: skip
    assert (
        nosy == f"Only the person who started job #{job_id} or a moderator can make me forget it."
    )
    assert rows(world.db, "SELECT COUNT(*) FROM jobs WHERE id = ?", job_id) == [(1,)]

    done = await said(await fake.send_slash_command("forget", {"job": job_id}, member=owner))
    assert done.startswith(f"Forgot job #{job_id} (")
    assert "1 image post deleted and its video taken down." in done
    # Its files are gone from the bot's disk, its rows from the store.
    assert not any(Path(p).exists() for p in (image, audio, clip))
    assert rows(world.db, "SELECT COUNT(*) FROM jobs WHERE id = ?", job_id) == [(0,)]
    assert rows(world.db, "SELECT COUNT(*) FROM scenes WHERE job_id = ?", job_id) == [(0,)]
    # The image posts in its thread are deleted; the video is taken off its reply.
    assert all(m.deleted for m in fake.messages[thread_id]), "an image post survived"
    assert video.attachments == [] and not video.deleted
    assert f"Job #{job_id} was forgotten at the request of <@" in video.content
    [progress] = progress_messages(fake, CHANNEL, job_id)
    embed = embed_of(progress.revisions[-1])
    assert embed["title"] == f"Job #{job_id} · forgotten"
    assert "no longer keeps this job's script, images or video" in embed["description"]
    assert "thumbnail" not in embed and progress.components == []

    status = await said(await fake.send_slash_command("status", {"job": job_id}, member=owner))
    assert f"There is no job #{job_id} on this server" in status
    # What it used still counts.
    assert rows(world.db, "SELECT COUNT(*) FROM admissions WHERE job_id = ?", job_id) == [(1,)]


# ------------------------------------------------------------ keep_days, across a restart


async def test_keep_days_forgets_old_jobs_at_start_and_the_rate_window_survives(
    burst: World,
) -> None:
    world, fake = burst, burst.fake
    job_id, kept_job = world.accepted()[1].job_id, world.accepted()[2].job_id  # [0]: forgotten
    assert job_id is not None and kept_job is not None
    [(image,)] = rows(world.db, "SELECT image FROM scenes WHERE job_id = ?", job_id)
    [(thread_id,)] = rows(world.db, "SELECT thread_id FROM jobs WHERE id = ?", job_id)

    def ended_a_month_ago() -> None:
        with sqlite3.connect(world.db) as conn:
            conn.execute("UPDATE jobs SET finished_at = finished_at - 31 * 86400 WHERE id = ?",
                         (job_id,))  # fmt: skip
        conn.close()

    await world.restart(between=ended_a_month_ago)
    [progress] = progress_messages(fake, CHANNEL, job_id)
    await fake.wait_for(lambda: "forgotten" in str(embed_of(progress.revisions[-1])["title"]),
                        30, "the old job's message to say it was forgotten")  # fmt: skip
    assert "keeps a job's script and files for 30 days" in description(progress)
    assert rows(world.db, "SELECT COUNT(*) FROM jobs WHERE id = ?", job_id) == [(0,)]
    assert rows(world.db, "SELECT COUNT(*) FROM jobs WHERE id = ?", kept_job) == [(1,)]
    # Only the bot's own copies go: what it posted stays, and the cache keeps its cap.
    assert not any(m.deleted for m in fake.messages[thread_id])
    assert Path(image).is_file()

    # The server's hourly rate is counted from the store: the restart did not reset it.
    late = await said(await fake.send_slash_command(
        "render", {"script": one_scene("jack", 0)}, member="jack"))  # fmt: skip
    assert late.startswith(SERVER_RATE) and TRY_AGAIN.search(late), late
