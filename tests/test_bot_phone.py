"""The phone flow against the fake Discord: the real bot in its own process, fake Together.ai
and speech servers. `/render` without a file opens one form (file upload, pasted script, aspect
radio group, captions and review checkboxes, title), each choice reaching the video; the
progress message's buttons: Cancel (asks first, refuses others, survives a restart), Retry
(the cache keeps what was made) and Send to me (a direct message; a user who refuses DMs is
told why); and the job's own words in /status.

One bot process (restarted once, by the last test) serves the module; each test is its own
requester with its own prompts, so the shared artifact cache never answers for another test.
"""

from __future__ import annotations

import subprocess
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
    Upload,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe
from tests.media_files import YELLOW, frame_colour, make_picture, near

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODERATOR = RoleSpec("Moderator")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina")
GUILD = GuildSpec(
    name="Phone Studio",
    roles=[MODERATOR],
    members=[
        *(MemberSpec(UserSpec(name)) for name in USERS),
        MemberSpec(UserSpec("mallory")),  # neither a requester nor a moderator
        MemberSpec(UserSpec("mod"), roles=[MODERATOR]),
    ],
)
CHANNEL = GUILD.channels[0].id
EPHEMERAL = 64
TEN_MIB = 10 * 1024 * 1024
LABEL, TEXT_INPUT, FILE_UPLOAD, RADIO, CHECKBOXES = 18, 4, 19, 21, 22


def script(name: str, scenes: int = 2, words: str = "") -> str:
    """Short scenes with prompts of their own (no cache hits from other tests)."""
    return f"# {name.title()}'s reel\n\n" + "".join(
        f"## {n}\nimage: {name} picture {n}\nHello from {name}, scene {n}. {words}\n\n"
        for n in range(1, scenes + 1)
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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-phone")
    config = tmp / "config.toml"
    discord = {"guild_ids": [GUILD.id], "moderator_role_ids": [MODERATOR.id],
               "edit_interval": 0.3}  # fmt: skip
    queue = {"max_concurrent_renders": 1, "per_user_limit": 3}
    config.write_text(toml_text({"discord": discord, "queue": queue}))
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        # A high audio bitrate gives the fakes' flat pictures a realistic size, so a video
        # re-encoded to fit a smaller limit has room to shrink.
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=tmp / "data",
                      extra={"REELBOT_VIDEO__AUDIO_BITRATE": "320k"})  # fmt: skip
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


async def open_form(world: World, member: str, **options: Any) -> InjectedInteraction:
    opened = await world.fake.send_slash_command("render", options, member=member)
    response = await opened.wait_response(timeout=3)
    assert response.type == 9 and response.elapsed < 3  # the form, at once
    return opened


async def said(handle: InjectedInteraction) -> str:
    """What the bot answered, ephemerally: after a "thinking…" defer, or at once."""
    response = await handle.wait_response(timeout=3)
    assert response.elapsed < 3
    if response.type == 5:
        [followup] = await handle.wait_followups(1, timeout=30)
        assert followup.ephemeral
        return followup.content
    assert response.data["flags"] & EPHEMERAL, response.data
    return response.content or ""


async def progress_of(world: World, handle: InjectedInteraction) -> tuple[int, RecordedMessage]:
    await handle.wait_followups(1, timeout=20)
    job = job_id_of(handle)
    fake = world.fake
    [progress] = await fake.wait_for(lambda: progress_messages(fake, CHANNEL, job), 10)
    return job, progress


def description(message: RecordedMessage) -> str:
    return str(embed_of(message.revisions[-1]).get("description", ""))


def fields(message: RecordedMessage) -> dict[str, str]:
    embed = embed_of(message.revisions[-1])
    return {f["name"]: str(f["value"]) for f in embed.get("fields", [])}


def custom_ids(message: RecordedMessage) -> list[str]:
    return [c["custom_id"] for row in message.components for c in row.get("components", [])]


async def shows(world: World, message: RecordedMessage, words: str, button: str) -> None:
    """Until the progress message says `words` and carries the `button` (a custom_id)."""
    await world.fake.wait_for(
        lambda: words in description(message) and button in custom_ids(message),
        90,
        f"{words!r} with {button}",
    )


async def video_reply(world: World, progress: RecordedMessage) -> tuple[RecordedMessage, Path]:
    fake = world.fake

    def posted() -> list[RecordedMessage]:
        return [m for m in replies_to(fake, CHANNEL, progress.id) if m.attachments]

    [reply] = await fake.wait_for(posted, 90, "the video")
    [upload] = [u for u in fake.uploads if u.message_id == reply.id]
    return reply, saved(world, upload)


def saved(world: World, upload: Upload) -> Path:
    path = world.tmp / f"{upload.message_id}.mp4"
    path.write_bytes(upload.data)
    return path


def frame_size(path: Path) -> tuple[int, int]:
    stream = ffprobe(path).stream("video")
    return int(stream["width"]), int(stream["height"])


def has_captions(path: Path) -> bool:
    """Burned-in words: the fake's images are one flat colour each, so a frame whose lower
    part holds more than a few shades of grey shows text. Looked at in three places."""
    duration = ffprobe(path).duration
    width, height = frame_size(path)
    for at in (0.25, 0.5, 0.75):
        gray = subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", f"{duration * at:.2f}", "-i", str(path),
             "-frames:v", "1", "-vf", "format=gray", "-f", "rawvideo", "-"],
            capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        lower = gray[width * (height // 2) : width * height]
        if max(lower) - min(lower) > 100:
            return True
    return False


def images_for(world: World, name: str) -> dict[str, int]:
    """How often each of `name`'s prompts was asked for (whatever the answer)."""
    counts: dict[str, int] = {}
    for request in world.together.requests:
        prompt = str((request.json or {}).get("prompt", ""))
        if prompt.startswith(f"{name} picture"):
            counts[prompt] = counts.get(prompt, 0) + 1
    return counts


# ------------------------------------------------------------ the form


async def test_the_form_has_five_labelled_inputs(world: World) -> None:
    opened = await open_form(world, "gina", aspect="1:1", title="Prefilled")
    modal = opened.modal
    assert modal is not None and len(modal["components"]) == 5
    assert [c["type"] for c in modal["components"]] == [LABEL] * 5
    inner = [c["component"] for c in modal["components"]]
    assert [c["type"] for c in inner] == [FILE_UPLOAD, TEXT_INPUT, RADIO, CHECKBOXES, TEXT_INPUT]
    assert inner[0]["max_values"] == 10 and inner[0]["required"] is False
    assert inner[1]["max_length"] == 4000
    # The command's options are filled in.
    assert [o["value"] for o in inner[2]["options"] if o.get("default")] == ["1:1"]
    assert inner[4]["value"] == "Prefilled"


async def test_an_uploaded_file_wins_and_each_choice_reaches_the_video(world: World) -> None:
    opened = await open_form(world, "alice")
    sent = await world.fake.submit_modal(
        opened,
        {
            "render:file": [AttachmentSpec("alice.md", script("alice").encode())],
            "render:script": "# Not this\n## 1\nimage: never used\nIgnored.\n",
            "render:aspect": "16:9",
            "render:options": [],  # no captions, no review
            "render:title": "Alice on the phone",
        },
    )
    answer = await said(sent)
    assert "The uploaded alice.md was used; the pasted text was not." in answer
    assert "Queued as **job #" in answer and "Cancel" in answer
    _, progress = await progress_of(world, sent)
    assert "· 16:9 · captions off" in description(progress)
    assert f"Asked by <@{GUILD.member('alice').id}> <t:" in description(progress)
    reply, video = await video_reply(world, progress)
    assert "your video **Alice on the phone** is ready" in reply.content
    width, height = frame_size(video)
    assert width > height and abs(width / height - 16 / 9) < 0.02
    assert not has_captions(video)
    assert images_for(world, "alice") == {"alice picture 1": 1, "alice picture 2": 1}
    assert not images_for(world, "never")  # the pasted script was not rendered


async def test_a_pasted_script_with_captions_and_review(world: World) -> None:
    opened = await open_form(world, "bob")
    sent = await world.fake.submit_modal(
        opened,
        {
            "render:script": script("bob", words="Words to read on screen."),
            "render:aspect": "1:1",
            "render:options": ["captions", "review"],
        },
    )
    answer = await said(sent)
    assert "Review is on" in answer
    job, progress = await progress_of(world, sent)
    await shows(world, progress, "Waiting for review", f"reelbot:approve-all:{job}")
    assert "· 1:1 · captions on · review" in description(progress)
    assert f"reelbot:cancel:{job}" in custom_ids(progress)  # cancellable while in review
    approved = await world.fake.click_button(progress, f"reelbot:approve-all:{job}", member="bob")
    assert "Every scene is approved" in await said(approved)
    reply, video = await video_reply(world, progress)
    assert "your video **Bob's reel** is ready" in reply.content  # the script's own title
    width, height = frame_size(video)
    assert width == height
    assert has_captions(video)


async def test_the_forms_other_files_are_the_renders_own_media(world: World) -> None:
    """Several files in the form: the script file is the script, the rest its own media."""
    photo = AttachmentSpec("photo.jpg", make_picture(world.tmp / "photo.jpg", colour=YELLOW)
                           .read_bytes())  # fmt: skip
    text = (
        "# Dave's own\n\n## 1\nmedia: photo.jpg\nMy own picture.\n\n"
        "## 2\nimage: dave picture 2\nA made one.\n"
    )
    opened = await open_form(world, "dave")
    sent = await world.fake.submit_modal(
        opened, {"render:file": [photo, AttachmentSpec("dave.md", text.encode())]}
    )
    assert "Queued as **job #" in await said(sent)
    _, progress = await progress_of(world, sent)
    _, video = await video_reply(world, progress)
    assert near(frame_colour(video, 0.5), YELLOW)  # scene 1 is the uploaded picture
    assert images_for(world, "dave") == {"dave picture 2": 1}  # only scene 2 was paid for


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({}, "The form was empty"),
        ({"render:script": "x" * 6000}, "fills the whole text box (4,000 characters)"),
        ({"render:file": [AttachmentSpec("notes.pdf", b"%PDF-1.4")]}, "No script came with"),
        ({"render:file": [AttachmentSpec("s.md", b"# T\n## 1\nimage: x\n")]}, "Line 2 (scene 1)"),
    ],
)
async def test_the_form_says_what_to_change(
    world: World, values: dict[str, Any], words: str
) -> None:
    """A paste longer than the box is cut by the client to 4000 characters: the bot says to
    upload it instead of rendering half a script."""
    before = len(world.together.requests)
    opened = await open_form(world, "frank")
    answer = await said(await world.fake.submit_modal(opened, values))
    assert words in answer and "Queued" not in answer
    assert len(world.together.requests) == before


# ------------------------------------------------------------ Send to me, /status


async def test_send_to_me_dms_a_copy_joined_again_from_the_cache(world: World) -> None:
    fake = world.fake
    handle = await fake.send_slash_command(
        "render", {"script": AttachmentSpec("c.md", script("carol").encode())}, member="carol"
    )
    job, progress = await progress_of(world, handle)
    await shows(world, progress, "**Done**", f"reelbot:send:{job}")
    _, channel_video = await video_reply(world, progress)
    delivered = world.tmp / "data" / "outputs" / f"job-{job}.mp4"
    # Posted, so removed from outputs/ (just after the progress message says Done).
    await fake.wait_for(lambda: not delivered.exists(), 10, "the delivered file's removal")
    asked = len(world.together.requests)

    # Dave (not the requester) asks for it in his DMs.
    answer = await said(await fake.click_button(progress, f"reelbot:send:{job}", member="dave"))
    assert answer.startswith("Sent to your direct messages")
    [dm] = fake.dms_with(GUILD.member("dave"))
    assert "Carol's reel" in dm.content
    [upload] = [u for u in fake.uploads if u.message_id == dm.id]
    assert upload.size <= TEN_MIB
    copy = saved(world, upload)
    probe = ffprobe(copy)
    assert probe.stream("video")["codec_name"] == "h264"
    assert abs(probe.duration - ffprobe(channel_video).duration) < 0.2
    assert len(world.together.requests) == asked  # nothing paid for again

    # Discord's real limit is smaller than the 10 MiB the bot knows (413): it re-encodes
    # smaller (pipeline/fit.py) and sends that.
    fake.knobs.upload_size_limit = limit = int(upload.size * 0.75)
    try:
        answer = await said(
            await fake.click_button(progress, f"reelbot:send:{job}", member="frank")
        )
    finally:
        fake.knobs.upload_size_limit = None
    assert answer.startswith("Sent to your direct messages")
    [dm] = fake.dms_with(GUILD.member("frank"))
    assert "Re-encoded to fit" in dm.content
    [fitted] = [u for u in fake.uploads if u.message_id == dm.id]
    assert fitted.size <= limit
    refit = ffprobe(saved(world, fitted))
    assert refit.stream("video")["codec_name"] == "h264"
    assert abs(refit.duration - probe.duration) < 0.3

    # Erin's privacy settings refuse the bot's DMs: one line says why.
    fake.refuse_dms(GUILD.member("erin"))
    answer = await said(await fake.click_button(progress, f"reelbot:send:{job}", member="erin"))
    assert answer.startswith("I can't send you direct messages") and "\n" not in answer
    assert fake.dms_with(GUILD.member("erin")) == []

    # /status: who asked, when, with which settings, and what to do next.
    status = await fake.send_slash_command("status", {"job": job}, member="dave")
    embed = (await status.wait_response(timeout=3)).data["embeds"][0]
    assert embed["description"].startswith(f"Asked by <@{GUILD.member('carol').id}> <t:")
    assert "the script's aspect" in embed["description"]
    what = {f["name"]: f["value"] for f in embed["fields"]}
    assert what["State"] == "✅ done" and "Send to me" in what["What to do"]


# ------------------------------------------------------------ Retry


async def test_retry_reuses_the_scenes_already_made(world: World) -> None:
    fake = world.fake
    world.together.script_of_statuses = [200, 402]  # scene 1's image, then no credit left
    try:
        handle = await fake.send_slash_command(
            "render", {"script": AttachmentSpec("e.md", script("erin").encode())}, member="erin"
        )
        job, progress = await progress_of(world, handle)
        await shows(world, progress, "**Failed**", f"reelbot:retry:{job}")
    finally:
        world.together.script_of_statuses = []
    assert "Retry" in fields(progress)["What to do"]
    assert images_for(world, "erin") == {"erin picture 1": 1, "erin picture 2": 1}
    status = await fake.send_slash_command("status", {"job": job}, member="erin")
    what = {
        f["name"]: f["value"] for f in (await status.wait_response()).data["embeds"][0]["fields"]
    }
    assert "Retry" in what["What to do"] and "What went wrong" in what

    nosy = await said(await fake.click_button(progress, f"reelbot:retry:{job}", member="mallory"))
    owner = GUILD.member("erin").id
    assert nosy == f"Only <@{owner}>, who started job #{job}, or a moderator can retry it."

    answer = await said(await fake.click_button(progress, f"reelbot:retry:{job}", member="erin"))
    assert f"Job #{job} is queued again" in answer
    await video_reply(world, progress)
    await shows(world, progress, "**Done**", f"reelbot:send:{job}")
    # Scene 1 was made once, before the failure: the retry asked only for scene 2 again.
    assert images_for(world, "erin") == {"erin picture 1": 1, "erin picture 2": 2}


# ------------------------------------------------------------ Cancel (restarts the bot)


async def test_cancel_asks_first_refuses_others_and_survives_a_restart(world: World) -> None:
    fake = world.fake
    world.together.latency = 1.5  # slow images: the job is surely still running
    try:
        handle = await fake.send_slash_command(
            "render", {"script": AttachmentSpec("g.md", script("gina", 6).encode())},
            member="gina",
        )  # fmt: skip
        job, progress = await progress_of(world, handle)
        cancel = f"reelbot:cancel:{job}"
        await shows(world, progress, "Rendering", cancel)

        nosy = await said(await fake.click_button(progress, cancel, member="mallory"))
        owner = GUILD.member("gina").id
        assert nosy == f"Only <@{owner}>, who started job #{job}, or a moderator can cancel it."

        # The requester is asked first; "Keep it" keeps it.
        asked = await fake.click_button(progress, cancel, member="gina")
        assert (await said(asked)).startswith(f"Cancel job #{job} (**Gina's reel**)?")
        confirm = asked.original
        assert confirm is not None and confirm.ephemeral
        assert custom_ids(confirm) == [f"reelbot:cancel-yes:{job}", f"reelbot:cancel-keep:{job}"]
        kept = await fake.click_button(confirm, f"reelbot:cancel-keep:{job}", member="gina")
        assert (await kept.wait_response(timeout=3)).type == 7  # the question is replaced
        assert confirm.content == f"Job #{job} keeps going." and confirm.components == []
        assert "Rendering" in description(progress)

        # A moderator asks; the bot restarts before the answer; the answer still works.
        asked = await fake.click_button(progress, cancel, member="mod")
        assert (await said(asked)).startswith(f"Cancel job #{job}")
        confirm = asked.original
        assert confirm is not None
        await world.restart()
        await shows(world, progress, "Rendering", cancel)  # resumed
        yes = await fake.click_button(confirm, f"reelbot:cancel-yes:{job}", member="mod")
        assert (await yes.wait_response(timeout=3)).type == 7
        await fake.wait_for(lambda: confirm.content.startswith(f"Cancelled job #{job}"), 20)
        await fake.wait_for(lambda: "**Cancelled**" in description(progress), 20)
        assert f"by <@{GUILD.member('mod').id}>" in description(progress)
        assert custom_ids(progress) == []  # nothing left to press
        assert not replies_to(fake, CHANNEL, progress.id)  # no video
    finally:
        world.together.latency = 0.05
