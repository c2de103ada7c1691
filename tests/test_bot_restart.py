"""A render survives its bot: stopped with SIGTERM, then killed with -9 while clips encode,
the bot started again on the same data dir finishes the job, in the same progress message and
thread, without asking for any image twice."""

from __future__ import annotations

from pathlib import Path

from tests.botproc import (
    BotProcess,
    all_done,
    bot_env,
    embed_of,
    job_id_of,
    progress_messages,
    replies_to,
    scene_rows,
    toml_text,
)
from tests.fakes.discord import (
    AttachmentSpec,
    FakeDiscord,
    GuildSpec,
    MemberSpec,
    RecordedMessage,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe

PROMPTS = ["a red lighthouse", "a green sea", "a blue sky", "a yellow moon"]
SCRIPT = "# Restart\n" + "".join(
    f"## {n}\nimage: {prompt}\nScene number {n}.\n" for n, prompt in enumerate(PROMPTS, start=1)
)


def titled(fake: FakeDiscord, thread_id: int, prefix: str) -> list[RecordedMessage]:
    """The thread's messages whose embed title starts with `prefix` ("Scene ": the scene
    images; "Storyboard")."""
    return [
        m
        for m in fake.messages.get(thread_id, [])
        if str(m.embeds[0].get("title", "")).startswith(prefix)
    ]


def clips_encoding(fake: FakeDiscord, progress: RecordedMessage, *, resumed: bool) -> bool:
    """Every image is in the thread, and a clip is being encoded (not all done yet)."""
    thread = fake.threads.get(progress.id)
    last = progress.revisions[-1]
    clips = [row.symbols[2] for row in scene_rows(last).values()]
    description = str(embed_of(last).get("description", ""))
    return (
        thread is not None
        and len(titled(fake, thread.id, "Scene ")) == len(PROMPTS)
        and len(titled(fake, thread.id, "Storyboard")) == 1  # posted once, in run 1
        and "🔄" in clips
        and not all_done(last)
        and (not resumed or "resumed after a restart" in description)
    )


async def test_the_bot_resumes_a_render_after_sigterm_and_kill_9(tmp_path: Path) -> None:
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    config = tmp_path / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [guild.id], "edit_interval": 0.3}}))
    async with (
        FakeDiscord(guilds=[guild]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(
            fake, together_url=together.base_url, speech_url=speech.base_url,
            data_dir=tmp_path / "data",
            # Slow clips, one at a time: the render is surely caught encoding.
            extra={"REELBOT_VIDEO__PAD_SECONDS": "3", "REELBOT_VIDEO__ENCODERS": "1"},
        )  # fmt: skip
        channel = guild.channels[0].id
        runs = [BotProcess(fake, config, env, tmp_path / f"bot-{n}.log") for n in (1, 2, 3)]
        try:
            # Run 1: queue the job; once clips encode, SIGTERM: a graceful stop.
            await runs[0].start()
            handle = await fake.send_slash_command(
                "render", {"script": AttachmentSpec("s.md", SCRIPT.encode())}, member="alice"
            )
            await handle.wait_followups(1)
            job = job_id_of(handle)
            [progress] = await fake.wait_for(lambda: progress_messages(fake, channel, job), 10)
            thread_id = progress.id  # a thread opened on a message shares its id
            await fake.wait_for(lambda: clips_encoding(fake, progress, resumed=False), 60)
            assert await runs[0].stop() == 0
            assert "Paused" in str(embed_of(progress.revisions[-1])["description"])

            # Run 2: it resumes in the same message; kill -9 while clips encode again.
            await runs[1].start()
            await fake.wait_for(lambda: clips_encoding(fake, progress, resumed=True), 60)
            await runs[1].kill9()
            killed_at = len(progress.revisions)

            # Run 3: it finishes.
            await runs[2].start()
            [reply] = await fake.wait_for(lambda: replies_to(fake, channel, progress.id), 90)
            await fake.wait_for(lambda: "**Done**" in str(embed_of(progress.revisions[-1])))
        except BaseException:
            for run in runs:
                print(f"---- {run.log.name} ----\n{run.stderr()}")
            raise
        finally:
            for run in runs:
                await run.stop()

        # Every image was asked for exactly once across the three runs.
        assert sorted(r.json["prompt"] for r in together.requests) == sorted(PROMPTS)
        assert all(r.status == 200 for r in together.requests)
        # One progress message, continued by every run; one thread, one image per scene.
        assert progress_messages(fake, channel, job) == [progress]
        assert len(progress.revisions) > killed_at and all_done(progress.revisions[-1])
        assert list(fake.threads) == [thread_id]
        assert [m.embeds[0]["title"] for m in titled(fake, thread_id, "Scene ")] == [
            f"Scene {n}" for n in range(1, len(PROMPTS) + 1)
        ]
        assert len(titled(fake, thread_id, "Storyboard")) == 1  # not again on resume
        # The video, as a reply mentioning the requester.
        [upload] = [u for u in fake.uploads if u.message_id == reply.id]
        video = tmp_path / "video.mp4"
        video.write_bytes(upload.data)
        assert ffprobe(video).duration > len(PROMPTS) * 3
        assert f"<@{guild.member('alice').id}>" in reply.content
        for run in runs:
            assert "Traceback" not in run.stderr(), run.stderr()
        assert fake.unhandled == [] and fake.server_errors == []


async def test_a_graceful_stop_waits_for_the_image_in_flight(tmp_path: Path) -> None:
    """SIGTERM while an image is being made: the bot waits for it (Together.ai goes on making
    it anyway, and it is paid for), so the resumed job does not ask for it again."""
    guild = GuildSpec(name="Studio", members=[MemberSpec(UserSpec("alice"))])
    config = tmp_path / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [guild.id], "edit_interval": 0.3}}))
    prompts = PROMPTS[:2]
    script = "# Stop\n" + "".join(
        f"## {n}\nimage: {prompt}\nScene number {n}.\n" for n, prompt in enumerate(prompts, 1)
    )
    async with (
        FakeDiscord(guilds=[guild]) as fake,
        FakeTogether(latency=3.0, generates_after_hangup=True) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp_path / "data")  # fmt: skip
        channel = guild.channels[0].id
        runs = [BotProcess(fake, config, env, tmp_path / f"bot-{n}.log") for n in (1, 2)]
        try:
            await runs[0].start()
            handle = await fake.send_slash_command(
                "render", {"script": AttachmentSpec("s.md", script.encode())}, member="alice"
            )
            await handle.wait_followups(1)
            job = job_id_of(handle)
            [progress] = await fake.wait_for(lambda: progress_messages(fake, channel, job), 10)
            await fake.wait_for(lambda: together.in_flight == 1, 30, "the first image request")
            assert await runs[0].stop() == 0
            assert [r.status for r in together.requests] == [200]  # answered, not hung up on

            await runs[1].start()
            await fake.wait_for(lambda: replies_to(fake, channel, progress.id), 90, "the video")
        except BaseException:
            for run in runs:
                print(f"---- {run.log.name} ----\n{run.stderr()}")
            raise
        finally:
            for run in runs:
                await run.stop()

    # Each image was asked for once across both runs, and never while another was in flight.
    assert [r.json["prompt"] for r in together.requests] == prompts
    assert all(r.status == 200 for r in together.requests)
    assert together.overlaps == 0 and together.max_in_flight == 1
    assert "waiting up to 30 s for 1 image(s) in flight" in runs[0].stderr()
    assert "scene 1's image: finished in the background; it is in the cache" in runs[0].stderr()
    for run in runs:
        assert "Traceback" not in run.stderr(), run.stderr()
