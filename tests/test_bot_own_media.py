"""Own media in Discord, against the real bot in its own process (fake Discord, Together.ai and
speech servers; real ffmpeg): `/render media1..4:` with a script mixing a generated scene, an own
picture and an own clip; every refusal of a bad upload as one line before any paid request;
pins while a job needs its media; and 🖼️ Use my picture in the thread (a modal with a file
upload, component type 19) making a scene's new version without a paid image.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe, packet_count
from tests.media_files import BLUE, GREEN, RED, YELLOW, frame_colour, make_clip, make_picture, near
from tests.test_own_media import REFUSALS, bad_media

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUILD = GuildSpec(
    name="Media Studio",
    members=[MemberSpec(UserSpec(n)) for n in ("alice", "bob", "carol", "dave", "mallory")],
)
CHANNEL = GUILD.channels[0].id
EPHEMERAL = 64
MB = 1024 * 1024
FILE_UPLOAD = 19
LABEL = 18


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    speech: FakeSpeech
    bot: BotProcess
    data_dir: Path
    tmp: Path

    def file(self, name: str, maker: Any, *args: Any, **kwargs: Any) -> AttachmentSpec:
        path = maker(self.tmp / name, *args, **kwargs)
        return AttachmentSpec(name, Path(path).read_bytes())

    def prompts(self, words: str) -> list[str]:
        return [
            str(r.json["prompt"]) for r in self.together.requests
            if r.json and words in str(r.json["prompt"])
        ]  # fmt: skip

    def pins(self, job_id: int) -> list[Path] | None:
        file = self.data_dir / "cache" / ".pins" / f"job-{job_id}.json"
        if not file.is_file():
            return None
        return [self.data_dir / "cache" / p for p in json.loads(file.read_text())["paths"]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-own-media")
    config = tmp / "config.toml"
    config.write_text(toml_text({
        "discord": {"guild_ids": [GUILD.id], "edit_interval": 0.3},
        "limits": {"max_media_bytes": MB, "max_media_seconds": 2.0},
    }))  # fmt: skip
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        data_dir = tmp / "data"
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=data_dir)  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, together, speech, bot, data_dir, tmp)
            log = bot.stderr()
            assert await bot.stop() == 0, log
        assert "Traceback" not in log, log
        assert fake.unhandled == [] and fake.server_errors == []


# ------------------------------------------------------------ helpers


async def render(world: World, member: str, source: str, **options: Any) -> InjectedInteraction:
    options = {"script": AttachmentSpec("reel.md", source.encode()), **options}
    return await world.fake.send_slash_command("render", options, member=member)


async def said(handle: InjectedInteraction) -> str:
    """What the bot answered, ephemerally: after a "thinking…" defer, or at once."""
    response = await handle.wait_response(timeout=3)
    if response.type == 5:
        [followup] = await handle.wait_followups(1, timeout=30)
        assert followup.ephemeral
        return followup.content
    assert response.type == 4 and response.data["flags"] & EPHEMERAL
    return response.content or ""


def progress_of(world: World, job_id: int) -> RecordedMessage:
    [progress] = progress_messages(world.fake, CHANNEL, job_id)
    return progress


async def video(world: World, job_id: int, count: int = 1) -> Path:
    """The job's `count`-th delivered video, saved."""
    fake = world.fake

    def posted() -> list[RecordedMessage]:
        progress = progress_messages(fake, CHANNEL, job_id)
        if not progress:
            return []
        return [m for m in replies_to(fake, CHANNEL, progress[0].id) if m.attachments]

    replies = await fake.wait_for(lambda: posted() if len(posted()) >= count else None, 120,
                                  f"video {count} of job {job_id}")  # fmt: skip
    [upload] = [u for u in fake.uploads if u.message_id == replies[count - 1].id]
    path = world.tmp / f"job-{job_id}-{count}.mp4"
    path.write_bytes(upload.data)
    return path


def job_state(world: World, job_id: int) -> str:
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return str(row[0])


def clips_of(world: World, job_id: int) -> list[Path]:
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        rows = db.execute("SELECT clip FROM scenes WHERE job_id = ? ORDER BY number", (job_id,))
        return [Path(clip) for (clip,) in rows]


def scene_message(world: World, job_id: int, number: int) -> RecordedMessage:
    thread = world.fake.threads[progress_of(world, job_id).id]
    [message] = [
        m for m in world.fake.messages.get(thread.id, [])
        if m.embeds and m.embeds[0].get("title") == f"Scene {number}"
    ]  # fmt: skip
    return message


def fields(message: RecordedMessage) -> dict[str, str]:
    return {f["name"]: str(f["value"]) for f in embed_of(message.revisions[-1]).get("fields", [])}


def button(message: RecordedMessage, action: str) -> str:
    ids = [c["custom_id"] for row in message.components for c in row.get("components", [])]
    found = [c for c in ids if c.startswith(f"reelbot:{action}:")]
    assert found, f"no {action} button on {ids}"
    return str(found[0])


def media_in_cache(world: World, data: bytes, suffix: str) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    return world.data_dir / "cache" / "media" / digest[:2] / f"{digest}{suffix}"


async def use_my_picture(
    world: World, message: RecordedMessage, member: str, upload: AttachmentSpec
) -> str:
    """Click 🖼️ Use my picture, check the form it opens, send it with `upload`."""
    opened = await world.fake.click_button(message, button(message, "picture"), member=member)
    response = await opened.wait_response(timeout=3)
    assert response.type == 9 and opened.modal is not None  # the form, at once
    [label] = opened.modal["components"]
    assert label["type"] == LABEL and label["component"]["type"] == FILE_UPLOAD
    file_id = label["component"]["custom_id"]
    return await said(await world.fake.submit_modal(opened, {file_id: [upload]}, member=member))


# ------------------------------------------------------------ a render mixing own media

MIXED = """\
# Mixed media
## 1
image: alice copper kettle on a stove
A generated picture, made for this video.
## 2
media: photo.jpg
Our own photo, slowly zooming in.
## 3
media: clip.mp4
Our own short clip, played again and again under these words.
"""


async def test_render_mixing_generated_picture_and_clip_uploads(world: World) -> None:
    photo = world.file("photo.jpg", make_picture, (480, 320), BLUE)
    clip = world.file("clip.mp4", make_clip, (RED, GREEN), seconds=1.0)
    spare = world.file("spare.png", make_picture, (200, 200), GREEN, image_format="PNG")
    handle = await render(world, "alice", MIXED, aspect="1:1",
                          media1=photo, media2=clip, media3=spare)  # fmt: skip
    answer = await said(handle)
    assert "Queued as **job #" in answer, answer
    assert "Not used (no scene names it with `media:`): spare.png" in answer
    job_id = job_id_of(handle)
    assert spare.id not in world.fake.state.cdn_downloads  # an unused upload is not fetched

    out = await video(world, job_id)
    # One paid image, the generated scene's; own media is never one.
    assert len(world.prompts("alice copper kettle")) == 1
    assert len(world.together.requests) == 1
    probe = ffprobe(out)
    assert (probe.stream("video")["width"], probe.stream("video")["height"]) == (1080, 1080)
    assert probe.stream("video")["codec_name"] == "h264"
    assert probe.stream("audio")["codec_name"] == "aac"
    clips = clips_of(world, job_id)
    assert len(clips) == 3
    # Joined by stream copy: every packet of the three clips, and their lengths.
    assert packet_count(out) == sum(packet_count(c) for c in clips)
    assert abs(probe.duration - sum(ffprobe(c).duration for c in clips)) < 0.3
    starts = [sum(ffprobe(c).duration for c in clips[:i]) for i in range(3)]
    assert near(frame_colour(out, starts[1] + 0.5), BLUE)
    assert any(near(frame_colour(out, starts[2] + t), RED) for t in (0.2, 0.3))

    # The uploads are kept in the cache by their content, and no longer pinned once it is done.
    assert media_in_cache(world, photo.data, ".jpg").read_bytes() == photo.data
    assert media_in_cache(world, clip.data, ".mp4").read_bytes() == clip.data
    await world.fake.wait_for(lambda: job_state(world, job_id) == "done", 20, "done")
    assert world.pins(job_id) is None

    # The thread says which scenes show an upload.
    assert fields(scene_message(world, job_id, 2))["Picture"] == (
        "🖼️ photo.jpg (uploaded with the render)"
    )
    assert "Picture" not in fields(scene_message(world, job_id, 1))

    # 🖼️ Use my picture on the generated scene, after delivery: a new version without a paid
    # image, and a new video that shows it.
    message = scene_message(world, job_id, 1)
    yellow = world.file("mine.png", make_picture, (600, 600), YELLOW, image_format="PNG")
    answer = await use_my_picture(world, message, "alice", yellow)
    assert answer.startswith("Using your picture for scene 1 (version 2)"), answer
    await world.fake.wait_for(lambda: fields(message).get("Version") == "2", 60, "version 2")
    assert "Uploaded" in fields(message)["Picture"]
    second = await video(world, job_id, count=2)
    assert len(world.together.requests) == 1  # still only the first render's image
    assert not near(frame_colour(out, 0.5), YELLOW)
    assert near(frame_colour(second, 0.5), YELLOW)
    assert near(frame_colour(second, starts[1] + 0.5), BLUE)  # the other scenes as they were


# ------------------------------------------------------------ refusals


def broken(name: str) -> str:
    return f"# Broken\n## 1\nimage: bob plain scene\nFine.\n## 2\nmedia: {name}\nBroken.\n"


@pytest.mark.parametrize("kind", [k for k in REFUSALS if k != "too large"])
async def test_each_bad_upload_is_one_line_before_any_paid_request(
    world: World, kind: str, tmp_path: Path
) -> None:
    name = bad_media(tmp_path, kind)
    before = len(world.together.requests)
    upload = AttachmentSpec(name, (tmp_path / name).read_bytes())
    answer = await said(await render(world, "bob", broken(name), media1=upload))
    assert answer.startswith(f"That script can't be rendered. Line 5 (scene 2): media '{name}' ")
    assert REFUSALS[kind] in answer, answer
    assert "\n" not in answer and "Traceback" not in answer and "job #" not in answer
    assert len(world.together.requests) == before


async def test_an_upload_too_large_is_refused_before_it_is_downloaded(world: World) -> None:
    upload = AttachmentSpec("huge.mp4", b"\x00" * 100, size=3 * MB)  # as Discord announces it
    answer = await said(await render(world, "bob", broken("huge.mp4"), media1=upload))
    assert answer == (
        "That script can't be rendered. Line 5 (scene 2): media 'huge.mp4' is 3 MB; at most "
        "1 MB is accepted ([limits] max_media_bytes)."
    )
    assert upload.id not in world.fake.state.cdn_downloads


@pytest.mark.parametrize(
    ("uploads", "words"),
    [
        ([], "media 'logo.png' was not uploaded: attach it to the render"),
        (["other.png"], "media 'logo.png' is not one of the files uploaded with this render "
                        "(other.png)"),
    ],
)  # fmt: skip
async def test_a_name_not_uploaded_is_refused(world: World, uploads: list[str], words: str) -> None:
    options = {f"media{i + 1}": world.file(n, make_picture, (100, 100), image_format="PNG")
               for i, n in enumerate(uploads)}  # fmt: skip
    answer = await said(await render(world, "bob", broken("logo.png"), **options))
    assert answer == f"That script can't be rendered. Line 5 (scene 2): {words}."


# ------------------------------------------------------------ review, pins, the form


async def test_use_my_picture_in_review_and_the_pins_while_the_job_needs_its_media(
    world: World,
) -> None:
    logo = world.file("logo.png", make_picture, (300, 300), GREEN, image_format="PNG")
    source = (
        "# Review\n## 1\nimage: carol lighthouse at dusk\nA lighthouse.\n"
        "## 2\nmedia: logo.png\nOur logo.\n"
    )
    handle = await render(world, "carol", source, review=True, aspect="16:9", media1=logo)
    await said(handle)
    job_id = job_id_of(handle)
    await world.fake.wait_for(lambda: job_state(world, job_id) == "review", 60, "review")
    kept_logo = media_in_cache(world, logo.data, ".png")
    assert world.pins(job_id) == [kept_logo]  # pinned while in review

    message = scene_message(world, job_id, 1)
    ids = [c["custom_id"].split(":")[1] for row in message.components for c in row["components"]]
    assert ids == ["regen", "edit", "picture", "approve"]

    # Someone else may not; a GIF is refused in one line naming the scene; nothing changes.
    refused = await world.fake.click_button(message, button(message, "picture"), member="mallory")
    assert "or a reviewer can review" in await said(refused)
    gif = AttachmentSpec("anim.gif", (world.tmp / bad_media(world.tmp, "gif")).read_bytes())
    answer = await use_my_picture(world, message, "carol", gif)
    assert answer == ("Scene 1: media 'anim.gif' is a GIF; a picture (PNG, JPEG, WebP) or a "
                      "video clip (MP4, MOV, WebM) is needed.")  # fmt: skip
    assert fields(message)["Version"] == "1"

    requests = len(world.together.requests)
    photo = world.file("carol.jpg", make_picture, (640, 360), YELLOW)
    answer = await use_my_picture(world, message, "carol", photo)
    assert answer.startswith("Using your picture for scene 1 (version 2)"), answer
    await world.fake.wait_for(lambda: fields(message).get("Version") == "2", 60, "version 2")
    await world.fake.wait_for(lambda: job_state(world, job_id) == "review", 60, "review again")
    kept_photo = media_in_cache(world, photo.data, ".jpg")
    assert sorted(world.pins(job_id) or []) == sorted([kept_logo, kept_photo])
    assert len(world.together.requests) == requests  # no paid image for it

    # Approve all: the video uses both, then the pins go.
    progress = progress_of(world, job_id)
    approve_all = f"reelbot:approve-all:{job_id}"
    await world.fake.wait_for(
        lambda: any(c["custom_id"] == approve_all for row in progress.components
                    for c in row["components"]), 20, "Approve all")  # fmt: skip
    approve = await world.fake.click_button(progress, approve_all, member="carol")
    assert "Every scene is approved" in await said(approve)
    out = await video(world, job_id)
    probe = ffprobe(out)
    assert (probe.stream("video")["width"], probe.stream("video")["height"]) == (1920, 1080)
    first, _ = clips_of(world, job_id)
    assert near(frame_colour(out, 0.5), YELLOW)
    assert near(frame_colour(out, ffprobe(first).duration + 0.5), GREEN)
    await world.fake.wait_for(lambda: job_state(world, job_id) == "done", 20, "done")
    assert world.pins(job_id) is None
