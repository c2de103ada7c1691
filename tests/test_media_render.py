"""Renders with a scene's own media: generated, own-picture and own-clip scenes in one video,
joined by stream copy; a clip looped or cut to its narration and cropped to the frame; its
sound dropped, or ducked under the narration; crossfades, captions, the review round and the
storyboard with media scenes. Real espeak-ng, ffmpeg and ffprobe; images from the Together fake
(so every paid request is counted)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.cache import ArtifactCache
from pipeline.config import Settings
from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.images.card import CardImages
from pipeline.own_media import FolderMedia, prepare_media
from pipeline.plan import RenderPlan, plan_render
from pipeline.render import Renderer, RenderResult, images_to_make, render_plan
from pipeline.script import parse_script
from pipeline.storyboard import make_storyboard, scene_images
from pipeline.tts.espeak import EspeakTTS
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory
from .media import ffprobe, packet_count
from .media_files import BLUE, GREEN, RED, YELLOW, frame_colour, make_clip, make_picture, near
from .test_cli import FAST, reelbot_async

KEY = "tg-media-key"
# What must be the same in every clip for the concat demuxer to join them by stream copy.
CODEC_FIELDS = {
    "video": ("codec_name", "profile", "width", "height", "pix_fmt", "r_frame_rate",
              "time_base", "sample_aspect_ratio"),
    "audio": ("codec_name", "sample_rate", "channels", "channel_layout", "time_base"),
}  # fmt: skip


def codec_params(clip: Path) -> dict[str, Any]:
    probe = ffprobe(clip)
    return {kind: {f: probe.stream(kind).get(f) for f in fields}
            for kind, fields in CODEC_FIELDS.items()}  # fmt: skip


def image_events(events: list[ProgressEvent], scene: int) -> list[Status]:
    return [
        e.status for e in events
        if isinstance(e, SceneEvent) and e.stage is Stage.IMAGE and e.scene == scene
    ]  # fmt: skip


async def planned(source: str, folder: Path, settings: Settings) -> RenderPlan:
    script = parse_script(source, filename="s.md")
    cache = ArtifactCache(settings.storage.data_dir / "cache")
    media = await prepare_media(script, FolderMedia(folder), cache, settings.limits)
    return plan_render(script, settings, media=media)


def segment_rms(video: Path, start: float, end: float, *, above: int | None = None) -> float:
    """RMS level (dB) of the sound from `start` to `end` seconds, measured by ffmpeg's astats;
    with `above`, of what is above that many Hz only."""
    filters = [f"highpass=f={above}"] * 3 if above else []
    graph = ",".join([*filters, "astats=measure_perchannel=none"])
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-ss", f"{start:.3f}", "-t", f"{end - start:.3f}",
         "-i", str(video), "-map", "0:a", "-af", graph, "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stderr  # fmt: skip
    found = re.findall(r"RMS level dB:\s*(-?[\d.]+|-inf)", log)
    assert found, log
    return -200.0 if found[-1] == "-inf" else float(found[-1])


# ---------------------------------------------------------------- generated, picture, clip

MIXED = """\
# Mixed
## 1
image: a copper kettle on a stove
A generated picture.
## 2
media: photo.jpg
Our own photo, slowly zooming.
## 3
media: short.mp4
This clip lasts one second, so it plays again and again under these words.
## 4
media: long.webm
A long clip, cut short.
"""


async def test_generated_own_picture_and_own_clip_scenes_in_one_video(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    make_picture(tmp_path / "photo.jpg", (480, 320), BLUE)  # landscape, in a portrait frame
    make_clip(tmp_path / "short.mp4", (RED, GREEN), seconds=1.0)  # 4:3
    make_clip(tmp_path / "long.webm", (YELLOW,), seconds=6.0)
    events: list[ProgressEvent] = []
    async with FakeTogether(expected_key=KEY) as together:
        settings = make_settings(
            images={"provider": "together", "base_url": together.base_url},
            video={"fps": 10, "pad_seconds": 0.3}, captions={"enabled": True},
        )  # fmt: skip
        plan = await planned(MIXED, tmp_path, settings)
        cache = ArtifactCache(settings.storage.data_dir / "cache")
        assert images_to_make(plan, cache, "together") == [1]  # what a front end will bill
        out = tmp_path / "mixed.mp4"
        result = await render_plan(plan, settings, out, on_event=events.append)
    # One paid request: the generated scene's; own media is never one.
    assert len(together.requests) == 1
    assert image_events(events, 1) == [Status.WAITING, Status.STARTED, Status.DONE]
    for scene in (2, 3, 4):
        assert image_events(events, scene) == [Status.CACHED]

    video = ffprobe(out).stream("video")
    assert (video["width"], video["height"]) == (1080, 1920)
    # Every clip has the same codec parameters, and the join copied all their packets.
    params = [codec_params(s.clip) for s in result.scenes]
    assert all(p == params[0] for p in params), params
    assert packet_count(out) == sum(packet_count(s.clip) for s in result.scenes)
    for done in result.scenes:  # each scene lasts its narration and the pad
        assert abs(ffprobe(done.clip).duration - (done.audio_seconds + 0.3)) < 0.15

    photo, short, long = result.scenes[1], result.scenes[2], result.scenes[3]
    assert near(frame_colour(photo.clip, 1.0), BLUE)
    # The one-second clip, looped: red, green, red, green...
    assert short.audio_seconds > 2.5
    for at, colour in ((0.25, RED), (0.75, GREEN), (1.25, RED), (1.75, GREEN)):
        assert near(frame_colour(short.clip, at), colour), (at, frame_colour(short.clip, at))
    # Scaled to cover the frame and cropped: no black bars at its edges.
    assert near(frame_colour(short.clip, 0.25, (0, 0, 60, 60)), RED)
    assert near(frame_colour(short.clip, 0.25, (1020, 1860, 1080, 1920)), RED)
    # The six-second clip is cut to its scene.
    assert ffprobe(long.clip).duration < 4.0
    assert near(frame_colour(long.clip, 1.0), YELLOW)
    # In the video, in order.
    starts = [sum(s.clip_seconds for s in result.scenes[:i]) for i in range(4)]
    assert near(frame_colour(out, starts[1] + 1.0), BLUE)
    assert near(frame_colour(out, starts[3] + 1.0), YELLOW)


# ---------------------------------------------------------------- the command


async def test_reelbot_render_with_own_media_next_to_the_script(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "shots").mkdir(parents=True)
    make_picture(project / "shots" / "photo.png", (600, 600), BLUE, image_format="PNG")
    make_clip(project / "shots" / "screen.mov", (RED, GREEN), seconds=1.0, tone=500)
    script = project / "launch.md"
    script.write_text(  # three lengths of narration: scene order follows clip length
        "# Launch\n"
        "## 1\nimage: a rocket on a launch pad\nShort.\n"
        "## 2\nmedia: shots/photo.png\nA somewhat longer line of narration.\n"
        "## 3\nmedia: shots/screen.mov\nThe longest line of narration of all three, by far.\n"
    )  # fmt: skip
    out = tmp_path / "launch.mp4"
    data = tmp_path / "data"
    async with FakeTogether(expected_key=KEY) as together:
        code, output = await reelbot_async(
            "render", str(script), "-o", str(out), data=data, TOGETHER_API_KEY=KEY,
            REELBOT_IMAGES__BASE_URL=together.base_url, **FAST,
        )  # fmt: skip
        assert code == 0, output
        assert len(together.requests) == 1
        generated = together.requests[0].colour
    assert "3 scenes, 1080x1080" in output

    probe = ffprobe(out)
    assert (probe.stream("video")["width"], probe.stream("video")["height"]) == (1080, 1080)
    clips = sorted(data.glob("cache/clip/*/*.mp4"), key=lambda p: ffprobe(p).duration)
    wavs = sorted(ffprobe(p).duration for p in data.glob("cache/audio/*/*.wav"))
    assert len(clips) == len(wavs) == 3
    # The join: a stream copy of clips that share their codec parameters.
    assert all(codec_params(c) == codec_params(clips[0]) for c in clips)
    assert packet_count(out) == sum(packet_count(c) for c in clips)
    assert packet_count(out, "a:0") == sum(packet_count(c, "a:0") for c in clips)
    # Each scene lasts its narration plus the pad (FAST: 0.1 s at 10 fps).
    for clip, wav in zip(clips, wavs, strict=True):
        assert abs(ffprobe(clip).duration - (wav + 0.1)) < 0.15
    assert abs(probe.duration - sum(ffprobe(c).duration for c in clips)) < 0.15
    # Scene by scene, what each shows: the generated image, the photo, the clip (sound dropped).
    assert generated is not None and near(frame_colour(clips[0], 0.3), generated)
    assert near(frame_colour(clips[1], 0.5), BLUE)
    assert near(frame_colour(clips[2], 0.25), RED) and near(frame_colour(clips[2], 0.75), GREEN)
    second = ffprobe(clips[0]).duration
    assert near(frame_colour(out, second + 0.5), BLUE)
    # The media stays in the cache (content-addressed, under the size cap); the pin is gone.
    assert len(list(data.glob("cache/media/*/*"))) == 2
    assert list(data.glob("cache/.pins/*")) == []


# ---------------------------------------------------------------- the clip's own sound

DUCK = """\
# Duck
## 1
The first scene has no clip of its own.
## 2
media: hum.mp4
This clip hums at a very high pitch under the narration.
"""
TONE = 13000.0  # above everything espeak-ng says (22.05 kHz audio): heard alone past 12 kHz


async def duck_render(settings: Settings, folder: Path, out: Path) -> RenderResult:
    return await render_plan(await planned(DUCK, folder, settings), settings, out)


@pytest.mark.parametrize("clip_audio", ["duck", "drop"])
async def test_the_clips_own_sound_is_ducked_under_the_narration_or_dropped(
    make_settings: SettingsFactory, tmp_path: Path, clip_audio: str
) -> None:
    make_clip(tmp_path / "hum.mp4", (GREEN,), seconds=1.5, tone=TONE)
    settings = make_settings(
        video={"fps": 10, "pad_seconds": 2.5, "clip_audio": clip_audio},  # long pauses
        captions={"enabled": False},
    )  # fmt: skip
    out = tmp_path / "v.mp4"
    result = await duck_render(settings, tmp_path, out)
    first, second = result.scenes
    start = first.clip_seconds
    speaking = (start + 0.3, start + second.audio_seconds - 0.3)
    pause = (start + second.audio_seconds + 0.8, start + second.clip_seconds - 0.3)
    # Nothing of the clip in the scene without one (espeak-ng leaves a trace above 12 kHz).
    before = segment_rms(out, 0.3, first.clip_seconds - 0.3, above=12000)  # speech residue
    hum_speaking = segment_rms(out, *speaking, above=12000)
    hum_pause = segment_rms(out, *pause, above=12000)
    assert before < -60, before
    if clip_audio == "drop":
        assert hum_pause < -90 and hum_speaking < -60, (hum_speaking, hum_pause)  # silence
        assert second.sound is None
        return
    assert second.sound is not None  # the own clip's file, for the sound pass
    # Under the narration, and ducked while it speaks (looped: the clip is 1.5 s long).
    assert hum_speaking > -55, hum_speaking
    assert hum_pause - hum_speaking >= 6, (hum_pause, hum_speaking)
    assert hum_pause > -40, hum_pause
    assert hum_pause - before > 25, (hum_pause, before)  # only where the clip plays
    # The narration is still on top.
    assert segment_rms(out, *speaking) - hum_speaking > 10
    assert packet_count(out) == sum(packet_count(s.clip) for s in result.scenes)


# ---------------------------------------------------------------- crossfades, review, storyboard


async def test_media_scenes_go_through_review_crossfades_and_captions(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    make_picture(tmp_path / "photo.jpg", (400, 400), BLUE)
    make_clip(tmp_path / "clip.webm", (RED, GREEN), seconds=2.0, tone=700)
    source = ("## 1\nmedia: photo.jpg\nA photo of our own.\n## 2\nmedia: clip.webm\n"
              "A clip of our own.\n## 3\nimage: a harbour\nA generated card.\n")  # fmt: skip
    settings = make_settings(
        video={"fps": 10, "crossfade": 0.3, "clip_audio": "duck"},
        captions={"enabled": True},
    )  # fmt: skip
    plan = await planned(source, tmp_path, settings)
    events: list[ProgressEvent] = []
    # The review round: every scene's clip, no join.
    renderer = Renderer(settings, tts=EspeakTTS(), images=CardImages(), on_event=events.append)
    first = await renderer.render(plan, tmp_path / "unused.mp4", join=False)
    assert not (tmp_path / "unused.mp4").exists()
    pictures = scene_images(events)
    photo = plan.scenes[0].media
    assert pictures is not None and photo is not None and pictures[0] == photo.path
    assert pictures[1].suffix == ".png" and pictures[1].parent.parent.name == "poster"
    sheet = make_storyboard(pictures, tmp_path / "board.jpg")
    assert sheet.stat().st_size > 0
    assert all(s not in image_events(events, 2) for s in (Status.STARTED, Status.DONE))

    # Approved: joined from the same clips, with crossfades and the clip's sound.
    out = tmp_path / "v.mp4"
    again: list[ProgressEvent] = []
    renderer = Renderer(settings, tts=EspeakTTS(), images=CardImages(), on_event=again.append)
    result = await renderer.render(plan, out)
    reused = {(e.scene, e.stage) for e in again if isinstance(e, SceneEvent)
              and e.status is Status.CACHED}  # fmt: skip
    assert {(n, Stage.CLIP) for n in (1, 2, 3)} <= reused
    assert [s.clip for s in result.scenes] == [s.clip for s in first.scenes]
    frames = [round(s.clip_seconds * 10) for s in result.scenes]
    probe = ffprobe(out)
    assert packet_count(out) == sum(frames) - 2 * 3  # two seams of 0.3 s at 10 fps
    assert abs(float(probe.stream("audio")["duration"]) - probe.duration) < 0.1
    decode = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(out), "-f", "null",
                             "-"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert decode.returncode == 0 and decode.stderr == ""
    assert result.scenes[0].captions is not None and result.scenes[1].captions is not None
