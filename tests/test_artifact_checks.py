"""Nothing bad enters the cache: every image, narration and clip is checked first, and a bad
answer from the image API is retried like a server error (issue 14, item 1)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.artifact_checks import (
    check_audio,
    check_clip,
    check_image,
    check_image_file,
    longest_plausible_speech,
)
from pipeline.config import LimitsConfig, Settings
from pipeline.errors import ImageError, MediaError, SceneFailed, TTSError
from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import RenderResult, render_plan
from pipeline.script import parse_script
from tests.fakes.audio import make_wav
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import BAD_ANSWERS, FakeTogether, noise_png, solid_png

from .conftest import SettingsFactory
from .media import ffprobe

API_KEY = "tgp-test-key-0123456789abcdef"
TWO_SCENES = "# Checked\n## 1\nimage: a lighthouse\nThe lamp is lit.\n## 2\nimage: a storm\nWaves."
ONE_SCENE = "## 1\nimage: a harbour\nThe boats come home.\n"
SIZE = (576, 1024)  # what a 9:16 render asks the image API for


@pytest.fixture
def together_settings(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TOGETHER_API_KEY", API_KEY)

    def factory(fake: FakeTogether, *, limits: dict[str, Any] | None = None,
                **images: Any) -> Settings:  # fmt: skip
        return make_settings(
            images={"provider": "together", "base_url": fake.base_url, "backoff_base": 0.05,
                    "backoff_max": 0.2, **images},
            video={"fps": 10, "pad_seconds": 0.2}, captions={"enabled": False},
            sound={"normalize": False}, limits=limits or {},
        )  # fmt: skip

    return factory


async def render(
    settings: Settings, out: Path, text: str, events: list[ProgressEvent] | None = None
) -> RenderResult:
    plan = plan_render(parse_script(text), settings)
    sink = events.append if events is not None else None
    return await render_plan(plan, settings, out, on_event=sink)


def cached(settings: Settings, kind: str) -> list[Path]:
    folder = settings.storage.data_dir / "cache" / kind
    return sorted(p for p in folder.glob("*/*") if p.is_file()) if folder.is_dir() else []


def picture_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as picture:
        picture.load()
        return picture.size


# ---------------------------------------------------------------- bad answers, end to end


@pytest.mark.parametrize("bad", BAD_ANSWERS)
async def test_a_bad_image_answer_is_retried_and_never_cached(
    together_settings: Any, tmp_path: Path, bad: str
) -> None:
    async with FakeTogether(script_of_statuses=[bad]) as fake:
        # "heavy" is a 1.7 MB noise picture: over a 1 MB cap (the same check as 25 MB).
        settings = together_settings(fake, limits={"image_max_mb": 1} if bad == "heavy" else {})
        result = await render(settings, tmp_path / "v.mp4", TWO_SCENES)

    prompts = [r.json["prompt"] for r in fake.requests]
    assert prompts == ["a lighthouse", "a lighthouse", "a storm"]  # the bad one was asked again
    assert all(r.status == 200 for r in fake.requests) and fake.successes == 2
    images = cached(settings, "image")
    assert len(images) == 2 and all(picture_size(p) == SIZE for p in images)
    assert {s.image for s in result.scenes} == set(images)
    assert ffprobe(tmp_path / "v.mp4").stream("video")["codec_name"] == "h264"


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("tiny", "the image is 1×1 px; at least 64 px a side is needed"),
        ("html", "answered without an image (the answer is not JSON)"),
        ("not-an-image", "the image is not a picture (440 bytes of something else)"),
        ("oversize", "the image is 4160×64 px; at most 4096 px a side is accepted"),
    ],
)
async def test_a_server_that_keeps_answering_badly_fails_clearly_and_is_asked_again_later(
    together_settings: Any, tmp_path: Path, bad: str, words: str
) -> None:
    async with FakeTogether(script_of_statuses=[bad] * 3) as fake:
        settings = together_settings(fake, max_attempts=3)
        with pytest.raises(SceneFailed) as caught:
            await render(settings, tmp_path / "v.mp4", ONE_SCENE)
        message = str(caught.value)
        assert message.startswith("scene 1, image: Together.ai ")
        # Not JSON is no answer at all; JSON with a bad picture in it is an unusable one.
        assert ("sent an unusable answer (" in message) == (bad != "html")
        assert words in message and "gave up after 3 attempts" in message
        assert len(fake.requests) == 3
        assert cached(settings, "image") == []  # nothing bad was kept
        assert not (tmp_path / "v.mp4").exists()

        # The server is healthy again: the next render asks for the image and succeeds.
        await render(settings, tmp_path / "v.mp4", ONE_SCENE)
    assert len(fake.requests) == 4 and fake.requests[-1].status == 200
    [image] = cached(settings, "image")
    assert picture_size(image) == SIZE
    assert ffprobe(tmp_path / "v.mp4").duration > 1


async def test_a_cache_poisoned_before_these_checks_is_healed(
    together_settings: Any, tmp_path: Path
) -> None:
    """A cache written by an older version may hold a 1x1 PNG under the image's key (and no
    clip, since the clip failed): the next render refuses it and asks again."""
    async with FakeTogether() as fake:
        settings = together_settings(fake)
        first = await render(settings, tmp_path / "a.mp4", ONE_SCENE)
        [scene] = first.scenes
        scene.image.write_bytes(solid_png(1, 1, (0, 0, 0)))
        scene.clip.unlink()
        events: list[ProgressEvent] = []
        second = await render(settings, tmp_path / "b.mp4", ONE_SCENE, events)
    assert len(fake.requests) == 2 and fake.successes == 2
    assert second.scenes[0].image == scene.image and picture_size(scene.image) == SIZE
    image_events = [(e.stage, e.status) for e in events
                    if isinstance(e, SceneEvent) and e.stage is Stage.IMAGE]  # fmt: skip
    assert (Stage.IMAGE, Status.DONE) in image_events
    assert abs(ffprobe(tmp_path / "b.mp4").duration - ffprobe(tmp_path / "a.mp4").duration) < 0.05


def _flip_a_byte(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x55
    return bytes(changed)


@pytest.mark.parametrize(
    "damage",
    [_flip_a_byte, lambda data: data[: len(data) * 2 // 3]],
    ids=["a changed byte", "cut short"],
)
async def test_a_cached_picture_damaged_since_is_made_again(
    together_settings: Any, tmp_path: Path, damage: Any
) -> None:
    """A cached PNG is checked by its chunks' checksums, not decoded again (it was when it
    entered the cache): a byte changed or a cut since then is still found, and it is made
    again."""
    async with FakeTogether() as fake:
        settings = together_settings(fake)
        first = await render(settings, tmp_path / "a.mp4", ONE_SCENE)
        [scene] = first.scenes
        good = scene.image.read_bytes()
        scene.image.write_bytes(damage(good))
        scene.clip.unlink()
        events: list[ProgressEvent] = []
        await render(settings, tmp_path / "b.mp4", ONE_SCENE, events)
    assert len(fake.requests) == 2 and fake.successes == 2
    with Image.open(scene.image) as picture:
        picture.load()  # whole again: every pixel decodes
        assert picture.size == SIZE and scene.image.read_bytes() != damage(good)
    assert (Stage.IMAGE, Status.DONE) in [(e.stage, e.status) for e in events
                                          if isinstance(e, SceneEvent)]  # fmt: skip
    assert abs(ffprobe(tmp_path / "b.mp4").duration - ffprobe(tmp_path / "a.mp4").duration) < 0.05


async def test_ten_minutes_of_speech_for_hello_there_is_refused(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(seconds_per_char=50.0) as speech:  # 12 characters: 600 s of audio
        settings = make_settings(tts={"provider": "openai", "base_url": speech.base_url},
                                 video={"fps": 10})  # fmt: skip
        with pytest.raises(SceneFailed) as caught:
            await render(settings, tmp_path / "v.mp4", "## 1\nHello there.\n")
        assert caught.value.stage == "audio"
        assert str(caught.value) == (
            "scene 1, audio: the narration is 10.0 minutes long for 12 characters of text; "
            "at most 11.0 s is plausible, so it was not kept"
        )
        assert cached(settings, "audio") == []

        speech.seconds_per_char = 0.06  # the server is mended: asked again, and kept
        result = await render(settings, tmp_path / "v.mp4", "## 1\nHello there.\n")
    assert len(speech.requests) == 2
    assert result.scenes[0].audio_seconds == pytest.approx(0.72, abs=0.01)
    assert len(cached(settings, "audio")) == 1


# ---------------------------------------------------------------- the checks themselves


def encoded(fmt: str, size: tuple[int, int] = SIZE, **options: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format=fmt, **options)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WebP")])
async def test_pictures_in_each_format_pass(tmp_path: Path, fmt: str, name: str) -> None:
    data = encoded(fmt)
    assert check_image(data, LimitsConfig()) == data
    path = tmp_path / "picture.bin"  # the check reads the bytes, not the name
    path.write_bytes(data)
    assert await check_image_file(path, LimitsConfig()) == name


def animated_png() -> bytes:
    frames = [Image.new("RGB", (96, 96), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "the image is empty"),
        (
            b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
            "the image is not a picture (an HTML page)",
        ),
        (b'{"error": "overloaded"}', "the image is not a picture (JSON text)"),
        (solid_png(1, 1, (0, 0, 0)), "the image is 1×1 px; at least 64 px a side is needed"),
        (solid_png(640, 63, (0, 0, 0)), "the image is 640×63 px; at least 64 px a side"),
        (solid_png(4097, 64, (0, 0, 0)), "the image is 4097×64 px; at most 4096 px a side"),
        (encoded("GIF"), "the image is a GIF file; PNG, JPEG or WebP is needed"),
        (encoded("PNG")[:400], "the image is a damaged PNG"),
        (animated_png(), "the image is an animated PNG; a still picture is needed"),
    ],
)
def test_what_is_refused_says_why(data: bytes, words: str) -> None:
    with pytest.raises(ImageError) as caught:
        check_image(data, LimitsConfig())
    assert words in str(caught.value)
    assert caught.value.retryable  # a bad answer is a server fault


async def test_the_size_cap_in_megabytes(tmp_path: Path) -> None:
    heavy = noise_png(512, 512)  # about 0.75 MB
    limits = LimitsConfig(image_max_mb=0.5)
    with pytest.raises(ImageError, match=r"the image is 0\.\d MB; at most 0\.5 MB is accepted"):
        check_image(heavy, limits)
    path = tmp_path / "heavy.png"
    path.write_bytes(heavy)
    with pytest.raises(ImageError, match=r"at most 0\.5 MB"):
        await check_image_file(path, limits)
    assert check_image(heavy, LimitsConfig()) == heavy  # 25 MB by default


def test_the_defaults_are_the_issues() -> None:
    limits = LimitsConfig()
    assert (limits.image_min_side, limits.image_max_side, limits.image_max_mb) == (64, 4096, 25)
    # "Hello there." is 12 characters: 1.5 s at 8 a second; 4 times that, plus 5 s.
    assert longest_plausible_speech("Hello there.", 1.0, limits) == pytest.approx(11.0)
    assert longest_plausible_speech("Hello there.", 0.5, limits) == pytest.approx(17.0)


async def test_speech_of_a_plausible_length_passes_and_the_rest_is_refused(tmp_path: Path) -> None:
    limits = LimitsConfig()
    wav = tmp_path / "a.wav"
    wav.write_bytes(make_wav(10.5))
    assert await check_audio(wav, text="Hello there.", speed=1.0, limits=limits) == pytest.approx(
        10.5, abs=0.01
    )
    wav.write_bytes(make_wav(11.5))
    with pytest.raises(TTSError, match=r"11\.5 s long for 12 characters of text; at most 11\.0 s"):
        await check_audio(wav, text="Hello there.", speed=1.0, limits=limits)
    assert await check_audio(wav, text="Hello there.", speed=0.5, limits=limits) > 11
    wav.write_bytes(b"<html>upstream timed out</html>")
    with pytest.raises(TTSError, match="the narration is not audio that can be read"):
        await check_audio(wav, text="Hello there.", speed=1.0, limits=limits)


def make_clip(path: Path, seconds: float, *, audio: bool = True) -> None:
    inputs = ["-f", "lavfi", "-i", f"color=c=blue:s=64x64:r=10:d={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", *inputs, "-c:v", "libx264", "-pix_fmt", "yuv420p",
         *(["-c:a", "aac"] if audio else []), "-shortest", str(path)],
        check=True, timeout=60,
    )  # fmt: skip


async def test_a_clip_must_last_what_it_was_made_for(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, 2.0)
    assert await check_clip(clip, seconds=2.0, fps=10) == pytest.approx(2.0, abs=0.1)
    with pytest.raises(MediaError, match=r"the clip came out 2\.0\d s long instead of 3\.00 s"):
        await check_clip(clip, seconds=3.0, fps=10)
    silent = tmp_path / "silent.mp4"
    make_clip(silent, 2.0, audio=False)
    with pytest.raises(MediaError, match="the clip came out without audio"):
        await check_clip(silent, seconds=2.0, fps=10)
