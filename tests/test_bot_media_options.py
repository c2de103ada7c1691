"""`/render captions:` and `/render music:` against the real bot in its own process (fake
Discord, Together.ai and speech servers); and the job's output file removed once delivered.

The fake narration is a 220 Hz tone; the music a 13 kHz one, measured in the delivered MP4
through a narrow band-pass. tests/botproc.py turns captions off in the config, so a caption
seen in a frame comes from the command's option.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image, ImageChops

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
    Upload,
    UserSpec,
)
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.media import ffprobe

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUILD = GuildSpec(
    name="Sound Studio",
    members=[MemberSpec(UserSpec(name)) for name in ("alice", "bob", "carol", "dave")],
)
CHANNEL = GUILD.channels[0].id
EPHEMERAL = 64
MUSIC_HZ = 13_000
SCRIPT = (
    "# Harbour lights\n\n"
    "## 1\nimage: a quiet harbour at night\nBoats rest in the dark water.\n\n"
    "## 2\nimage: a lamp on the pier\nA single lamp keeps watch.\n"
)


@dataclass
class World:
    fake: FakeDiscord
    together: FakeTogether
    speech: FakeSpeech
    bot: BotProcess
    data_dir: Path
    tmp: Path
    music: bytes


def sine_flac(path: Path, hz: int, seconds: float) -> bytes:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency={hz}:duration={seconds}:sample_rate=48000",
         "-c:a", "flac", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path.read_bytes()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("bot-media")
    config = tmp / "config.toml"
    config.write_text(toml_text({"discord": {"guild_ids": [GUILD.id], "edit_interval": 0.3}}))
    music = sine_flac(tmp / "theme.flac", MUSIC_HZ, 3.0)
    async with (
        FakeDiscord(guilds=[GUILD]) as fake,
        FakeTogether(latency=0.05) as together,
        FakeSpeech() as speech,
    ):
        data_dir = tmp / "data"
        env = bot_env(fake, together_url=together.base_url, speech_url=speech.base_url,
                      data_dir=data_dir)  # fmt: skip
        async with running_bot(fake, config, env, tmp / "bot.log") as bot:
            yield World(fake, together, speech, bot, data_dir, tmp, music)
            log = bot.stderr()
            assert await bot.stop() == 0, log
        assert "Traceback" not in log, log
        assert fake.unhandled == [] and fake.server_errors == []


async def render(world: World, member: str, **options: Any) -> InjectedInteraction:
    options = {"script": AttachmentSpec("harbour.md", SCRIPT.encode()), **options}
    return await world.fake.send_slash_command("render", options, member=member)


async def delivered(world: World, handle: InjectedInteraction) -> tuple[int, Upload]:
    fake = world.fake
    await handle.wait_followups(1, timeout=20)
    job_id = job_id_of(handle)

    def video() -> Upload | None:
        for progress in progress_messages(fake, CHANNEL, job_id):
            if not all_done(progress.revisions[-1]):
                continue
            for reply in replies_to(fake, CHANNEL, progress.id):
                upload = next((u for u in fake.uploads if u.message_id == reply.id), None)
                if upload is not None:
                    return upload
        return None

    upload = await fake.wait_for(video, 90, f"job {job_id}'s video")
    return job_id, upload


def job_row(world: World, job_id: int) -> sqlite3.Row:
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        db.row_factory = sqlite3.Row
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        assert row is not None
        return row


def clips_of(world: World, job_id: int) -> list[Path]:
    with sqlite3.connect(world.data_dir / "bot.sqlite3", timeout=10) as db:
        rows = db.execute("SELECT clip FROM scenes WHERE job_id = ? ORDER BY number", (job_id,))
        return [Path(clip) for (clip,) in rows]


def band_level(video: Path, hz: int) -> float:
    """Mean level (dB) of the audio in a narrow band around `hz`."""
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", str(video), "-vn",
         "-af", f"bandpass=f={hz}:width_type=h:w=400,volumedetect", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stderr  # fmt: skip
    match = re.search(r"mean_volume: (-?[\d.]+|-inf) dB", out)
    assert match, out
    return -120.0 if match[1] == "-inf" else float(match[1])


def frame(video: Path, at: float) -> Image.Image:
    png = video.with_suffix(f".{at}.png")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", str(at), "-i", str(video),
         "-frames:v", "1", str(png)],
        check=True, timeout=60,
    )  # fmt: skip
    with Image.open(png) as image:
        return image.convert("RGB")


def changed_share(a: Image.Image, b: Image.Image, top: float, bottom: float) -> float:
    """The share of pixels that differ clearly between a and b, in a band of rows given as
    fractions of the height."""
    box = (0, round(a.height * top), a.width, round(a.height * bottom))
    diff = ImageChops.difference(a.crop(box), b.crop(box)).convert("L")
    histogram = diff.histogram()
    return sum(histogram[60:]) / sum(histogram)


# ------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("music", "words"),
    [
        (AttachmentSpec("theme.exe", b"MZ\x90\x00"), "is not a music file"),
        (AttachmentSpec("theme.mp3", b"", size=30 * 1024 * 1024), "music may be at most 25 MB"),
    ],
)
async def test_bad_music_is_refused_before_download(
    world: World, music: AttachmentSpec, words: str
) -> None:
    handle = await render(world, "bob", music=music)
    response = await handle.wait_response(timeout=3)
    assert response.type == 4 and response.data["flags"] & EPHEMERAL
    assert words in (response.content or ""), response.content
    assert music.id not in world.fake.state.cdn_downloads


async def test_a_file_with_no_audio_is_refused_and_not_kept(world: World) -> None:
    music = AttachmentSpec("theme.mp3", b"this is not audio at all" * 100)
    handle = await render(world, "bob", music=music)
    [answer] = await handle.wait_followups(1, timeout=20)
    assert answer.ephemeral and "holds no audio" in answer.content, answer.content
    assert "job #" not in answer.content  # nothing queued
    assert not [p for p in (world.data_dir / "cache" / "music").rglob("*") if p.is_file()]


# ------------------------------------------------------------ music and captions


async def test_music_and_captions_options_reach_the_video(world: World) -> None:
    # captions:false with music, then captions:true without: same scenes, so the second
    # render reuses every image and narration and differs only in its clips.
    with_music = await render(
        world, "alice", captions=False, music=AttachmentSpec("theme.flac", world.music)
    )
    music_job, music_upload = await delivered(world, with_music)
    captioned_job, captioned_upload = await delivered(
        world, await render(world, "carol", captions=True)
    )
    assert len(world.together.requests) == 2 and len(world.speech.requests) == 2

    # The options as recorded with the jobs; the music kept under its content's hash.
    digest = hashlib.sha256(world.music).hexdigest()
    saved = world.data_dir / "cache" / "music" / digest[:2] / f"{digest}.flac"
    assert saved.read_bytes() == world.music
    options = json.loads(job_row(world, music_job)["options"])
    assert (options["captions"], options["music"]) == (False, str(saved))
    assert json.loads(job_row(world, captioned_job)["options"])["music"] is None

    music_mp4, captioned_mp4 = world.tmp / "music.mp4", world.tmp / "captioned.mp4"
    music_mp4.write_bytes(music_upload.data)
    captioned_mp4.write_bytes(captioned_upload.data)
    for video in (music_mp4, captioned_mp4):
        assert ffprobe(video).stream("audio")["codec_name"] == "aac"

    # The 13 kHz music is in the first video's sound, not in the second's.
    with_music_db, without_db = band_level(music_mp4, MUSIC_HZ), band_level(captioned_mp4, MUSIC_HZ)
    assert with_music_db > -75 and with_music_db > without_db + 20, (with_music_db, without_db)

    # The captions: the same frame differs in the caption band (bottom, 15% margin) only.
    plain, captioned = frame(music_mp4, 0.6), frame(captioned_mp4, 0.6)
    assert plain.size == captioned.size == (1080, 1920)
    assert changed_share(plain, captioned, 0.65, 0.88) > 0.01
    assert changed_share(plain, captioned, 0.05, 0.55) < 0.001


async def test_a_delivered_video_leaves_only_the_cache(world: World) -> None:
    job_id, _ = await delivered(world, await render(world, "dave", captions=False))
    outputs = world.data_dir / "outputs"
    await world.fake.wait_for(
        lambda: job_row(world, job_id)["state"] == "done", 20, f"job {job_id} to be done"
    )
    assert not list(outputs.glob(f"*job-{job_id}.*")), list(outputs.iterdir())
    clips = clips_of(world, job_id)
    assert len(clips) == 2 and all(c.is_file() for c in clips)
    assert all(c.is_relative_to(world.data_dir / "cache") for c in clips)
    final = embed_of(progress_messages(world.fake, CHANNEL, job_id)[0].revisions[-1])
    assert "Posted below" in str(final.get("fields"))
