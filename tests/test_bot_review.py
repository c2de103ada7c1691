"""Scene review against the fake Discord: the real bot in its own process, fake Together.ai
and speech servers. Regenerate, Edit prompt (modal), Approve, Approve all; who may press them;
double clicks; and the buttons after the bot process restarts.

One bot process (restarted once, by the last test) serves the module; each test is its own
requester with its own prompts, so the shared artifact cache never answers for another test.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.store import JobOptions, JobState, NewScene, Store
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
    Upload,
    UserSpec,
)
from tests.fakes.server import RecordedRequest
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe

pytestmark = pytest.mark.asyncio(loop_scope="module")

REVIEWER = RoleSpec("Reviewer")
GUILD = GuildSpec(
    name="Review Studio",
    roles=[REVIEWER],
    members=[
        *(MemberSpec(UserSpec(name)) for name in ("alice", "bob", "carol", "dave", "erin")),
        MemberSpec(UserSpec("mallory")),  # neither the requester nor a reviewer
        MemberSpec(UserSpec("rita"), roles=[REVIEWER]),
    ],
)
CHANNEL = GUILD.channels[0].id
EPHEMERAL = 64


def script(name: str) -> str:
    """Two short scenes with prompts of their own (no cache hits from other tests)."""
    return (
        f"# {name.title()}'s reel\nnegative_prompt: blurry\n\n"
        f"## 1\nimage: {name} lighthouse\nnegative: fog\nA lighthouse for {name}.\n\n"
        f"## 2\nimage: {name} harbour\nA harbour for {name}.\n"
    )


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    speech: FakeSpeech
    bot: BotProcess
    config: Path
    env: dict[str, str]
    tmp: Path
    bots: list[BotProcess] = field(default_factory=list)

    async def restart(self) -> None:
        """SIGTERM the bot (a clean stop), then start a new process on the same data dir."""
        assert await self.bot.stop() == 0, self.bot.stderr()
        self.bot = BotProcess(self.fake, self.config, self.env, self.tmp / "bot-2.log")
        self.bots.append(self.bot)
        await self.bot.start()


@dataclass
class Job:
    id: int
    progress: RecordedMessage
    thread_id: int


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-review")
    config = tmp / "config.toml"
    discord = {"guild_ids": [GUILD.id], "reviewer_role_ids": [REVIEWER.id], "edit_interval": 0.3}
    config.write_text(toml_text({"discord": discord}))
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp / "data")  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot-1.log") as bot:
            world = World(fake, together, speech, bot, config, env, tmp, [bot])
            try:
                yield world
            except BaseException:
                for run in world.bots[1:]:
                    print(f"---- {run.log.name} ----\n{run.stderr()}")
                raise
            finally:
                assert await world.bot.stop() == 0  # SIGTERM is a clean stop
        for run in world.bots:
            assert "Traceback" not in run.stderr(), run.stderr()
        assert fake.unhandled == [] and fake.server_errors == []


# ------------------------------------------------------------ helpers


async def render(world: World, member: str, *, review: bool) -> Job:
    fake = world.fake
    options: dict[str, Any] = {"script": AttachmentSpec("reel.md", script(member).encode())}
    if review:
        options["review"] = True
    handle = await fake.send_slash_command("render", options, member=member)
    [queued] = await handle.wait_followups(1, timeout=10)
    job_id = job_id_of(handle)
    if review:
        assert "Review is on" in queued.content
    [progress] = await fake.wait_for(lambda: progress_messages(fake, CHANNEL, job_id), 10)
    thread = await fake.wait_for(lambda: fake.threads.get(progress.id), 20, "the thread")
    return Job(job_id, progress, thread.id)


def description(message: RecordedMessage) -> str:
    return str(embed_of(message.revisions[-1]).get("description", ""))


def fields(message: RecordedMessage) -> dict[str, str]:
    embed = message.embeds[0]
    return {f["name"]: str(f["value"]) for f in embed.get("fields", [])}


def custom_ids(message: RecordedMessage) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row.get("components", [])]


def button(message: RecordedMessage, action: str) -> str:
    """The custom_id of a scene message's button (`regen`, `edit`, `approve`)."""
    found = [c for c in custom_ids(message) if c.startswith(f"reelbot:{action}:")]
    assert found, f"no {action} button on {custom_ids(message)}"
    return found[0]


def scene_message(world: World, job: Job, number: int) -> RecordedMessage:
    """The scene's message (not the copies of its replaced versions)."""
    [message] = [
        m
        for m in world.fake.messages.get(job.thread_id, [])
        if m.embeds and m.embeds[0].get("title") == f"Scene {number}"
    ]
    return message


async def in_review(world: World, job: Job, approved: int = 0) -> None:
    await world.fake.wait_for(
        lambda: (
            f"Waiting for review** — {approved} of 2" in description(job.progress)
            and f"reelbot:approve-all:{job.id}" in custom_ids(job.progress)
        ),
        60,
        f"job {job.id} to wait for review ({approved} approved)",
    )


async def click(
    world: World, message: RecordedMessage, custom_id: str, member: str
) -> InjectedInteraction:
    return await world.fake.click_button(message, custom_id, member=member)


async def said(handle: InjectedInteraction) -> str:
    """What the bot answered, ephemerally: after a "thinking…" defer, or at once."""
    response = await handle.wait_response(timeout=3)
    assert response.elapsed < 3
    if response.type == 5:
        [followup] = await handle.wait_followups(1, timeout=20)
        assert followup.ephemeral
        return followup.content
    assert response.type == 4 and response.data["flags"] & EPHEMERAL
    return response.content or ""


async def video(world: World, job: Job, count: int = 1) -> tuple[RecordedMessage, Upload]:
    """The job's `count`-th video: a reply to its progress message, with an MP4."""
    fake = world.fake

    def posted() -> list[RecordedMessage]:
        return [m for m in replies_to(fake, CHANNEL, job.progress.id) if m.attachments]

    replies = await fake.wait_for(lambda: posted() if len(posted()) >= count else None, 90,
                                  "the video")  # fmt: skip
    reply = replies[count - 1]
    [upload] = [u for u in fake.uploads if u.message_id == reply.id]
    path = world.tmp / f"{reply.id}.mp4"
    path.write_bytes(upload.data)
    assert ffprobe(path).stream("video")["codec_name"] == "h264"
    return reply, upload


async def finished(world: World, job: Job, member: str) -> None:
    """Until /status says the job is done (the video is posted a moment before that)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        status = await world.fake.send_slash_command("status", {"job": job.id}, member=member)
        embed = (await status.wait_response(timeout=3)).data["embeds"][0]
        if {f["name"]: f["value"] for f in embed["fields"]}["State"] == "✅ done":
            return
        assert loop.time() < deadline, embed
        await asyncio.sleep(0.2)  # poll interval, under the deadline above


def images_for(world: World, member: str, scene_words: str) -> list[RecordedRequest]:
    prompt = f"{member} {scene_words}"
    return [r for r in world.together.requests if r.json and r.json["prompt"].startswith(prompt)]


# ------------------------------------------------------------ review:true


async def test_review_waits_for_every_approval_then_posts_the_video(world: World) -> None:
    fake = world.fake
    job = await render(world, "alice", review=True)
    await in_review(world, job)
    first, second = scene_message(world, job, 1), scene_message(world, job, 2)
    for message in (first, second):
        actions = [c.split(":")[1] for c in custom_ids(message)]
        assert actions == ["regen", "edit", "picture", "approve"]
        assert fields(message)["Review"] == "👀 Waiting for approval"
    assert not replies_to(fake, CHANNEL, job.progress.id)  # no video: nothing approved
    assert not (world.tmp / "data" / "outputs" / f"job-{job.id}.mp4").exists()  # nor joined

    # Someone who is neither the requester nor a reviewer: refused, ephemerally.
    refused = await said(await click(world, first, button(first, "approve"), "mallory"))
    assert "Only <@" in refused and "or a reviewer" in refused
    assert fields(scene_message(world, job, 1))["Review"] == "👀 Waiting for approval"

    answer = await said(await click(world, first, button(first, "approve"), "alice"))
    assert "Scene 1 approved (1 of 2 scenes approved)" in answer
    await fake.wait_for(lambda: fields(first)["Review"] == "✅ Approved", 10)
    [approved] = [c for row in first.components for c in row["components"]
                  if c["custom_id"].startswith("reelbot:approve:")]  # fmt: skip
    assert approved["disabled"] is True and approved["label"] == "Approved"
    await in_review(world, job, approved=1)
    assert not replies_to(fake, CHANNEL, job.progress.id)  # still waiting for scene 2

    answer = await said(await click(world, job.progress, f"reelbot:approve-all:{job.id}", "alice"))
    assert "Every scene is approved" in answer
    reply, _ = await video(world, job)
    assert f"<@{GUILD.member('alice').id}>" in reply.content and "is ready" in reply.content
    await fake.wait_for(lambda: "**Done**" in description(job.progress), 10)
    # No Approve all once it is done; Send to me instead (bot/cogs/job_buttons.py).
    assert custom_ids(job.progress) == [f"reelbot:send:{job.id}"]
    assert fields(second)["Review"] == "✅ Approved"  # Approve all showed on the scene too
    # The scenes were made once: approving joined what the review round had made.
    assert len(images_for(world, "alice", "")) == 2


async def test_regenerate_makes_one_new_image_and_keeps_the_old_one(world: World) -> None:
    fake = world.fake
    job = await render(world, "bob", review=True)
    await in_review(world, job)
    message = scene_message(world, job, 2)
    old_seed = int(fields(message)["Seed"])
    old_image = next(u for u in fake.uploads if u.message_id == message.id).data
    regen = button(message, "regen")
    before = len(images_for(world, "bob", "harbour"))

    # A double click: the second arrives before the first is done.
    clicks = [await click(world, message, regen, "bob"), await click(world, message, regen, "bob")]
    answers = sorted(await asyncio.gather(*(said(c) for c in clicks)))
    assert answers[0].startswith("Regenerating scene 2: version 2"), answers
    assert "already being regenerated" in answers[1], answers

    await fake.wait_for(lambda: fields(message).get("Version") == "2", 30, "version 2")
    [request] = images_for(world, "bob", "harbour")[before:]  # exactly one new image
    assert request.json["seed"] != old_seed
    assert fields(message)["Seed"] == str(request.json["seed"])  # the message shows it
    assert message.attachments[-1]["filename"] == "scene-02-v2.png"
    assert button(message, "regen").endswith(":2:2")  # its buttons act on version 2 now

    # The previous version stays in the thread: a reply to the scene message.
    [kept] = [m for m in fake.messages[job.thread_id] if m.content.startswith("Scene 2, version 1")]
    assert kept.revisions[0].body["message_reference"]["message_id"] in (
        message.id,
        str(message.id),
    )
    assert kept.embeds[0]["title"] == "Scene 2 · version 1 (replaced)"
    assert fields(kept)["Seed"] == str(old_seed) and kept.components == []
    assert next(u for u in fake.uploads if u.message_id == kept.id).data == old_image

    await in_review(world, job)  # back to review; regenerating took scene 2's approval away
    assert not replies_to(fake, CHANNEL, job.progress.id)


# ------------------------------------------------------------ review:false, afterwards


async def test_edit_prompt_after_delivery_posts_a_new_version(world: World) -> None:
    fake = world.fake
    job = await render(world, "carol", review=False)
    await video(world, job)
    await finished(world, job, "carol")
    message = scene_message(world, job, 1)
    actions = [c.split(":")[1] for c in custom_ids(message)]
    assert actions == ["regen", "edit", "picture"]  # no Approve
    seed = fields(message)["Seed"]
    speech_before = len(world.speech.requests)

    opened = await click(world, message, button(message, "edit"), "carol")
    assert (await opened.wait_response(timeout=3)).type == 9  # the modal, at once
    assert opened.modal is not None
    defaults = {
        c["custom_id"]: c.get("value")
        for row in opened.modal["components"]
        for c in ([row["component"]] if "component" in row else row["components"])
    }
    assert defaults == {"review:prompt": "carol lighthouse", "review:negative": "blurry, fog"}

    new = {"review:prompt": "carol lighthouse in a purple storm", "review:negative": "rain, text"}
    answer = await said(await fake.submit_modal(opened, new))
    assert "Re-rendering scene 1 with the new prompt" in answer

    reply, _ = await video(world, job, count=2)
    assert "Version 2: scene 1 changed." in reply.content
    [request] = [r for r in world.together.requests if r.json and "purple" in r.json["prompt"]]
    assert request.json["prompt"] == "carol lighthouse in a purple storm"
    assert request.json["negative_prompt"] == "rain, text"
    assert str(request.json["seed"]) == seed  # an edit keeps the seed
    assert len(images_for(world, "carol", "harbour")) == 1  # scene 2 was reused
    assert len(world.speech.requests) == speech_before  # so was the narration
    await fake.wait_for(lambda: message.embeds[0]["description"] == new["review:prompt"], 10)
    assert fields(message)["Negative prompt"] == "rain, text"
    await fake.wait_for(lambda: "Version 2: scene 1 changed" in str(job.progress.embeds), 10)


async def test_a_failed_regeneration_can_be_tried_again(world: World) -> None:
    fake = world.fake
    job = await render(world, "erin", review=False)
    await video(world, job)
    await finished(world, job, "erin")
    message = scene_message(world, job, 1)
    regen = button(message, "regen")

    world.together.script_of_statuses = [402]  # Together.ai: no credit left
    try:
        assert (await said(await click(world, message, regen, "erin"))).startswith("Regenerating")
        await fake.wait_for(lambda: "**Failed**" in description(job.progress), 30, "the failure")
    finally:
        world.together.script_of_statuses = []
    assert fields(message)["Version"] == "1"  # version 2 was never made: the message keeps 1

    # The same button again: it acts on the version the message shows.
    answer = await said(await click(world, message, regen, "erin"))
    assert answer.startswith("Regenerating scene 1: version 3"), answer
    await fake.wait_for(lambda: fields(message).get("Version") == "3", 30, "version 3")
    reply, _ = await video(world, job, count=2)
    assert "Version 2: scene 1 changed." in reply.content
    assert [r.status for r in images_for(world, "erin", "lighthouse")] == [200, 402, 200]


# ------------------------------------------------------------ restart


async def test_buttons_work_after_the_bot_restarts(world: World) -> None:
    fake = world.fake
    job = await render(world, "dave", review=True)
    await in_review(world, job)
    first, second = scene_message(world, job, 1), scene_message(world, job, 2)

    await world.restart()

    # Use my picture opens its form on a message from the last run.
    opened = await click(world, first, button(first, "picture"), "dave")
    assert (await opened.wait_response(timeout=3)).type == 9
    assert opened.modal is not None
    assert opened.modal["custom_id"] == f"reelbot:upload:{job.id}:1:1"

    # A reviewer (not the requester) regenerates scene 2 on a message from the last run.
    answer = await said(await click(world, second, button(second, "regen"), "rita"))
    assert answer.startswith("Regenerating scene 2")
    await fake.wait_for(lambda: fields(second).get("Version") == "2", 30, "version 2")
    assert len(images_for(world, "dave", "harbour")) == 2
    await in_review(world, job)

    answer = await said(await click(world, first, button(first, "approve"), "rita"))
    assert "(1 of 2 scenes approved)" in answer
    answer = await said(await click(world, second, button(second, "approve"), "dave"))
    assert "Every scene is approved" in answer
    reply, _ = await video(world, job)
    assert re.search(r"your video \*\*Dave's reel\*\* is ready", reply.content)
    assert len(images_for(world, "dave", "")) == 3  # 2, then scene 2 once more


# ------------------------------------------------------------ the store's rules


async def test_a_scene_changes_only_from_the_version_clicked(tmp_path: Path) -> None:
    """The guards behind the buttons, without Discord: a click acts on the version it shows,
    never while the job renders, and approving the last scene queues the job once."""
    async with await Store.open(tmp_path / "bot.sqlite3") as store:
        job = await store.create_job(
            guild_id=1, channel_id=2, user_id=3, script="-", filename="s.md",
            options=JobOptions(review=True), title="T",
            scenes=[NewScene(1, 11, "red", ""), NewScene(2, 22, "blue", "")],
        )  # fmt: skip
        await store.set_state(job.id, JobState.RUNNING)
        assert await store.revise_scene(job.id, 1, 1, seed=5, image_prompt="red",
                                        negative_prompt="") is None  # fmt: skip
        assert await store.approve_scene(job.id, 1, 1)  # approving while it renders is fine
        assert await store.end_review_round(job.id) is JobState.REVIEW

        revised = await store.revise_scene(job.id, 1, 1, seed=5, image_prompt="crimson",
                                           negative_prompt="fog")  # fmt: skip
        assert revised is not None and (revised.version, revised.seed) == (2, 5)
        assert not revised.approved and revised.image_prompt == "crimson"
        job_now = await store.get_job(job.id)
        assert job_now is not None and job_now.state is JobState.QUEUED
        # The same click again (still version 1), even though the job is only queued.
        assert await store.revise_scene(job.id, 1, 1, seed=6, image_prompt="x",
                                        negative_prompt="") is None  # fmt: skip
        assert not await store.approve_scene(job.id, 1, 1)  # the old version
        assert not await store.approve_all(job.id)  # only a job in review

        await store.set_state(job.id, JobState.RUNNING)
        assert await store.end_review_round(job.id) is JobState.REVIEW
        assert await store.approve_scene(job.id, 1, 2)
        assert not await store.queue_if_approved(job.id)  # scene 2 is not approved yet
        assert await store.approve_all(job.id) == [2]
        assert await store.queue_if_approved(job.id)
        assert not await store.queue_if_approved(job.id)  # once

        await store.set_state(job.id, JobState.RUNNING)
        assert await store.end_review_round(job.id) is JobState.QUEUED  # all approved meanwhile
        await store.set_state(job.id, JobState.CANCELLED)
        assert await store.revise_scene(job.id, 2, 1, seed=1, image_prompt="b",
                                        negative_prompt="") is None  # fmt: skip
