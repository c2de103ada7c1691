"""Render workers on arq and Redis (`[queue] backend = "arq"`), all real processes on loopback:

    fake Discord ◄── the bot (python -m bot): enqueues, follows each run's Redis stream
                     redis-server (appendonly, in tmp_path)
    FakeTogether ◄── reelbot worker × 3: render, image slots as leases in Redis
    (one key)        the shared [storage] data_dir

Four jobs, one image at a time across every worker (the fake answers an overlapping request
429 and counts it); one worker killed with -9 mid-render: its job is taken up by another,
which finds the finished images in the shared cache; every video is delivered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import sqlite3
from pathlib import Path

import pytest

from tests.botproc import (
    BotProcess,
    all_done,
    bot_env,
    embed_of,
    job_id_of,
    progress_messages,
    replies_to,
    toml_text,
)
from tests.fakes.discord import (
    AttachmentSpec,
    FakeDiscord,
    GuildSpec,
    InjectedInteraction,
    MemberSpec,
    RecordedMessage,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe
from tests.workerproc import WorkerProcess, free_port, running_redis

JOBS = 4
SCENES = 3
LEASE_SECONDS = 5.0


def script(job: int) -> str:
    return f"# Job {job}\n" + "".join(
        f"## {n}\nimage: job {job} scene {n}\nJob {job}, scene number {n}.\n"
        for n in range(1, SCENES + 1)
    )


def arq_config(path: Path, guild: GuildSpec, redis_url: str) -> Path:
    path.write_text(
        toml_text(
            {
                "discord": {"guild_ids": [guild.id], "edit_interval": 0.3},
                "queue": {"backend": "arq", "per_user_limit": JOBS, "max_concurrent_renders": 1},
                "redis": {
                    "url": redis_url,
                    "lease_seconds": LEASE_SECONDS,
                    "connect_timeout": 10.0,
                },
            }
        )
    )
    return path


async def in_state(fake: FakeDiscord, job: int, state: str, timeout: float = 60) -> None:
    """Until /status says the job is in `state` (the store's word, not a message's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await fake.send_slash_command("status", {"job": job}, member="alice")
        embed = (await status.wait_response(timeout=10)).data["embeds"][0]
        if {f["name"]: f["value"] for f in embed["fields"]}["State"].endswith(f" {state}"):
            return
        assert loop.time() < deadline, embed
        await asyncio.sleep(0.2)  # poll interval, under the deadline above


def rendering(worker: WorkerProcess) -> set[int]:
    """Jobs the worker's log says it started (and did not finish)."""
    log = worker.output()
    started = {int(n) for n in re.findall(r"job (\d+): rendering", log)}
    return started - {int(n) for n in re.findall(r"job (\d+): (?:done|failed)", log)}


async def test_three_workers_render_four_jobs_and_survive_a_kill_9(tmp_path: Path) -> None:
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    channel = guild.channels[0].id
    async with (
        running_redis(tmp_path / "redis") as redis,
        FakeDiscord(guilds=[guild]) as fake,
        FakeTogether(latency=0.4) as together,
        FakeSpeech() as speech,
    ):
        config = arq_config(tmp_path / "config.toml", guild, redis.url)
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp_path / "shared")  # fmt: skip
        bot = BotProcess(fake, config, env, tmp_path / "bot.log")
        workers = [WorkerProcess(config, env, tmp_path / f"worker-{n}.log") for n in (1, 2, 3)]
        try:
            for worker in workers:
                await worker.start()
            await bot.start()
            handles: list[InjectedInteraction] = []
            for job in range(1, JOBS + 1):
                attachment = AttachmentSpec(f"job{job}.md", script(job).encode())
                handles.append(await fake.send_slash_command(
                    "render", {"script": attachment}, member="alice"))  # fmt: skip
            for handle in handles:
                await handle.wait_followups(1, timeout=20)
            jobs = [job_id_of(h) for h in handles]

            # A worker is mid-render: one of its job's images is made, not all of them.
            def victim() -> WorkerProcess | None:
                made = {str(r.json["prompt"]) for r in together.requests if r.status == 200}
                for worker in workers:
                    for job in rendering(worker):
                        own = {f"job {jobs.index(job) + 1} scene {n}"
                               for n in range(1, SCENES + 1)}  # fmt: skip
                        if 0 < len(own & made) < SCENES:
                            return worker
                return None

            killed = await fake.wait_for(victim, 90, "a worker in the middle of a render")
            await killed.kill9()

            def delivered() -> bool:
                return all(
                    replies_to(fake, channel, p.id)
                    and "**Done**" in str(embed_of(p.revisions[-1]).get("description", ""))
                    for job in jobs
                    for p in progress_messages(fake, channel, job)
                ) and all(progress_messages(fake, channel, job) for job in jobs)

            await fake.wait_for(delivered, 180, "every video to be delivered")
        except BaseException:
            print(f"---- bot ----\n{bot.stderr()}")
            for worker in workers:
                print(f"---- {worker.log.name} ----\n{worker.output()}")
            raise
        finally:
            await bot.stop()
            for worker in workers:
                await worker.stop()

        # Zero overlapping image requests: one key, one slot, shared through Redis leases.
        assert together.overlaps == 0
        finished = sorted((r for r in together.requests if r.t_end is not None),
                          key=lambda r: r.t_start)  # fmt: skip
        for before, after in itertools.pairwise(finished):
            assert before.t_end is not None and after.t_start >= before.t_end, after.json
        # Each image asked for once, but the one in flight at the kill: at most scenes + 1.
        prompts = [str(r.json["prompt"]) for r in together.requests]
        assert len(prompts) <= JOBS * SCENES + 1, sorted(prompts)
        assert set(prompts) == {f"job {j} scene {n}" for j in range(1, JOBS + 1)
                                for n in range(1, SCENES + 1)}  # fmt: skip
        for job in range(1, JOBS + 1):
            own = [p for p in prompts if p.startswith(f"job {job} ")]
            assert len(own) <= SCENES + 1, own
        # Every video once: one progress message and one reply with one video per job.
        for job in jobs:
            [progress] = progress_messages(fake, channel, job)
            [reply] = replies_to(fake, channel, progress.id)
            [upload] = [u for u in fake.uploads if u.message_id == reply.id]
            video = tmp_path / f"video-{job}.mp4"
            video.write_bytes(upload.data)
            assert ffprobe(video).duration > SCENES
        assert len([u for u in fake.uploads if u.filename.endswith(".mp4")]) == JOBS
        # The killed worker's job went to another worker.
        others = "".join(w.output() for w in workers if w is not killed)
        assert "(attempt 2)" in others
        assert "Traceback" not in bot.stderr(), bot.stderr()
        for worker in workers:
            assert "Traceback" not in worker.output(), worker.output()
        assert fake.unhandled == [] and fake.server_errors == []


async def test_the_bot_restarts_cancels_and_outlives_a_redis_restart(tmp_path: Path) -> None:
    """The bot killed with -9 mid-render: the worker goes on, and the restarted bot reads the
    run's stream on from where it was, in the same progress message, and posts the video once.
    /cancel stops a job on the worker. Redis restarted (append-only) loses no queued job."""
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    channel = guild.channels[0].id
    async with (
        running_redis(tmp_path / "redis") as redis,
        FakeDiscord(guilds=[guild]) as fake,
        FakeTogether(latency=0.2) as together,
        FakeSpeech() as speech,
    ):
        config = arq_config(tmp_path / "config.toml", guild, redis.url)
        env = bot_env(
            fake, together_url=together.base_url, speech_url=speech.base_url,
            data_dir=tmp_path / "shared",
            # Slow clips, one at a time: the render is surely caught encoding.
            extra={"REELBOT_VIDEO__PAD_SECONDS": "3", "REELBOT_VIDEO__ENCODERS": "1"},
        )  # fmt: skip
        bots = [BotProcess(fake, config, env, tmp_path / f"bot-{n}.log") for n in (1, 2)]
        worker = WorkerProcess(config, env, tmp_path / "worker.log")
        try:
            await bots[0].start()
            # Redis restarts with a job queued and no worker yet: the job is still there.
            first = await fake.send_slash_command(
                "render", {"script": AttachmentSpec("a.md", script(1).encode())}, member="alice"
            )
            await first.wait_followups(1, timeout=20)
            job = job_id_of(first)
            await fake.wait_for(lambda: "job 1: handed to the workers" in bots[0].stderr()
                                or None, 20, "the job in arq's queue")  # fmt: skip
            await redis.stop()
            await redis.start()
            await worker.start()
            [progress] = await fake.wait_for(lambda: progress_messages(fake, channel, job), 10)

            def encoding() -> bool:
                description = str(embed_of(progress.revisions[-1]).get("description", ""))
                return "🔄" in description and len(together.requests) == SCENES

            await fake.wait_for(encoding, 90, "the first job's clips encoding")
            await bots[0].kill9()
            edits = len(progress.revisions)
            await bots[1].start()
            [reply] = await fake.wait_for(lambda: replies_to(fake, channel, progress.id), 120)
            await fake.wait_for(lambda: "**Done**" in str(embed_of(progress.revisions[-1])))
            assert len(progress.revisions) > edits  # the same message, continued

            # /cancel reaches a job the worker is rendering.
            second = await fake.send_slash_command(
                "render", {"script": AttachmentSpec("b.md", script(2).encode())}, member="alice"
            )
            await second.wait_followups(1, timeout=20)
            other = job_id_of(second)
            await fake.wait_for(lambda: f"job {other}: rendering" in worker.output() or None,
                                60, "the worker to take the second job")  # fmt: skip
            cancel = await fake.send_slash_command("cancel", {"job": other}, member="alice")
            assert f"Cancelled job #{other}" in (await cancel.wait_followups(1))[0].content
            await fake.wait_for(lambda: f"job {other}: stopped" in worker.output() or None, 20,
                                "the worker to stop the render")  # fmt: skip
        except BaseException:
            for bot in bots:
                print(f"---- {bot.log.name} ----\n{bot.stderr()}")
            print(f"---- worker ----\n{worker.output()}")
            raise
        finally:
            for bot in bots:
                await bot.stop()
            await worker.stop()

        # The first job was rendered once, by attempt 1 (Redis kept it), and posted once.
        assert "job 1: rendering (attempt 1)" in worker.output()
        assert "attempt 2" not in worker.output()
        assert sorted(str(r.json["prompt"]) for r in together.requests
                      if str(r.json["prompt"]).startswith("job 1 ")) == [
            f"job 1 scene {n}" for n in range(1, SCENES + 1)
        ]  # fmt: skip
        [upload] = [u for u in fake.uploads if u.message_id == reply.id]
        assert [u for u in fake.uploads if u.filename.endswith(".mp4")] == [upload]
        video = tmp_path / "video.mp4"
        video.write_bytes(upload.data)
        assert ffprobe(video).duration > SCENES
        assert progress_messages(fake, channel, job) == [progress]
        assert all_done(progress.revisions[-1])
        # No event was lost across the kill: the bot records each scene's artifacts from the
        # events it reads (those after the kill, read by the second bot, included).
        with contextlib.closing(sqlite3.connect(tmp_path / "shared" / "bot.sqlite3")) as db:
            rows = db.execute("SELECT audio, image, clip FROM scenes WHERE job_id = ?",
                              (job,)).fetchall()  # fmt: skip
            assert len(rows) == SCENES and all(all(row) for row in rows), rows
            assert db.execute("SELECT count(*) FROM remote_runs").fetchone() == (0,)
        for bot in bots:
            assert "Traceback" not in bot.stderr(), bot.stderr()
        assert "Traceback" not in worker.output()
        assert fake.unhandled == [] and fake.server_errors == []


async def test_regenerate_reaches_a_worker_and_review_delivers_through_it(tmp_path: Path) -> None:
    """Scene review with the renders on a worker: Regenerate makes the scene's new image
    there (one new request, a new seed), and Approve all joins and posts the video."""
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    channel = guild.channels[0].id
    async with (
        running_redis(tmp_path / "redis") as redis,
        FakeDiscord(guilds=[guild]) as fake,
        FakeTogether() as together,
        FakeSpeech() as speech,
    ):
        config = arq_config(tmp_path / "config.toml", guild, redis.url)
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp_path / "shared")  # fmt: skip
        bot = BotProcess(fake, config, env, tmp_path / "bot.log")
        worker = WorkerProcess(config, env, tmp_path / "worker.log")
        try:
            await worker.start()
            await bot.start()
            handle = await fake.send_slash_command(
                "render",
                {"script": AttachmentSpec("r.md", script(1).encode()), "review": True},
                member="alice",
            )
            await handle.wait_followups(1, timeout=20)
            job = job_id_of(handle)
            [progress] = await fake.wait_for(lambda: progress_messages(fake, channel, job), 10)
            thread = await fake.wait_for(lambda: fake.threads.get(progress.id), 60, "the thread")

            def scene(number: int) -> RecordedMessage | None:
                return next((m for m in fake.messages.get(thread.id, [])
                             if m.embeds and m.embeds[0].get("title") == f"Scene {number}"),
                            None)  # fmt: skip

            def buttons(message: RecordedMessage) -> list[str]:
                return [str(c["custom_id"]) for row in message.components
                        for c in row.get("components", [])]  # fmt: skip

            def review_ready() -> bool:
                return f"reelbot:approve-all:{job}" in buttons(progress)

            await fake.wait_for(review_ready, 60, "the scenes to wait for review")
            second = scene(2)
            assert second is not None
            [regen] = [c for c in buttons(second) if c.startswith("reelbot:regen:")]
            before = len(together.requests)
            clicked = await fake.click_button(second, regen, member="alice")
            await clicked.wait_response(timeout=10)

            def version_2() -> bool:
                fields = {f["name"]: str(f["value"]) for f in second.embeds[0].get("fields", [])}
                return fields.get("Version") == "2"

            await fake.wait_for(version_2, 60, "scene 2's version 2 from the worker")
            await fake.wait_for(lambda: worker.output().count(f"job {job}: done") == 2, 60,
                                "the second review round to end")  # fmt: skip
            await in_state(fake, job, "review")
            await fake.wait_for(review_ready, 60, "the Approve all button again")
            [old] = [r for r in together.requests[:before] if r.json["prompt"] == "job 1 scene 2"]
            [again] = together.requests[before:]
            assert again.json["prompt"] == "job 1 scene 2"
            assert again.json["seed"] != old.json["seed"]
            approve = await fake.click_button(progress, f"reelbot:approve-all:{job}",
                                              member="alice")  # fmt: skip
            await approve.wait_response(timeout=10)
            [reply] = await fake.wait_for(lambda: replies_to(fake, channel, progress.id), 90)
            assert await worker.stop() == 0  # SIGTERM: a graceful stop
            assert worker.output().strip().endswith("stopped")
        except BaseException:
            print(f"---- bot ----\n{bot.stderr()}\n---- worker ----\n{worker.output()}")
            raise
        finally:
            await bot.stop()
            await worker.stop()

        # Three runs on the worker (review round, scene 2 again, the join); four images.
        assert worker.output().count(f"job {job}: done") == 3
        assert len(together.requests) == SCENES + 1
        [upload] = [u for u in fake.uploads if u.message_id == reply.id]
        video = tmp_path / "video.mp4"
        video.write_bytes(upload.data)
        assert ffprobe(video).duration > SCENES
        assert "Traceback" not in bot.stderr() and "Traceback" not in worker.output()
        assert fake.unhandled == [] and fake.server_errors == []


async def test_a_job_redis_forgot_is_queued_again_from_the_store(tmp_path: Path) -> None:
    """Redis loses everything (restarted without its append-only file) while a job waits for a
    worker: the bot, whose store still has the job, puts it in the queue again."""
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    channel = guild.channels[0].id
    async with (
        running_redis(tmp_path / "redis") as redis,
        FakeDiscord(guilds=[guild]) as fake,
        FakeTogether() as together,
        FakeSpeech() as speech,
    ):
        config = arq_config(tmp_path / "config.toml", guild, redis.url)
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp_path / "shared")  # fmt: skip
        bot = BotProcess(fake, config, env, tmp_path / "bot.log")
        worker = WorkerProcess(config, env, tmp_path / "worker.log")
        try:
            await bot.start()
            handle = await fake.send_slash_command(
                "render", {"script": AttachmentSpec("a.md", script(1).encode())}, member="alice"
            )
            await handle.wait_followups(1, timeout=20)
            job = job_id_of(handle)
            await fake.wait_for(lambda: f"job {job}: handed to the workers" in bot.stderr()
                                or None, 20, "the job in arq's queue")  # fmt: skip
            await redis.stop()
            for file in (tmp_path / "redis").rglob("*"):
                if file.is_file() and file.name != "redis.log":
                    file.unlink()
            await redis.start()
            await worker.start()
            [progress] = await fake.wait_for(lambda: progress_messages(fake, channel, job), 10)
            [reply] = await fake.wait_for(lambda: replies_to(fake, channel, progress.id), 90)
        except BaseException:
            print(f"---- bot ----\n{bot.stderr()}\n---- worker ----\n{worker.output()}")
            raise
        finally:
            await bot.stop()
            await worker.stop()

        assert f"job {job}: neither rendering nor queued" in bot.stderr()  # queued again
        assert f"job {job}: rendering (attempt 2)" in worker.output()
        assert "(attempt 1)" not in worker.output()
        assert len(together.requests) == SCENES
        [upload] = [u for u in fake.uploads if u.message_id == reply.id]
        video = tmp_path / "video.mp4"
        video.write_bytes(upload.data)
        assert ffprobe(video).duration > SCENES
        assert "Traceback" not in bot.stderr() and "Traceback" not in worker.output()


async def test_the_bot_without_its_redis_says_so_and_stops(tmp_path: Path) -> None:
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    async with FakeDiscord(guilds=[guild]) as fake, FakeTogether() as together:
        url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
        config = arq_config(tmp_path / "config.toml", guild, url)
        config.write_text(config.read_text().replace("connect_timeout = 10.0",
                                                     "connect_timeout = 1.0"))  # fmt: skip
        env = bot_env(fake, together_url=together.base_url, speech_url=together.base_url,
                      data_dir=tmp_path / "data")  # fmt: skip
        bot = BotProcess(fake, config, env, tmp_path / "bot.log")
        with pytest.raises(RuntimeError, match="the bot exited"):
            await bot.start()
        await bot.stop()
    last = bot.stderr().strip().splitlines()[-1]
    assert last.startswith("error: the bot cannot reach Redis at 127.0.0.1:"), bot.stderr()
    assert "hunter2" not in bot.stderr() and "Traceback" not in bot.stderr()
