"""The pipeline against loopback fakes of Together.ai and an OpenAI-compatible speech server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import SceneFailed
from pipeline.events import ProgressEvent, RetryWait, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from tests.fakes.server import closed_base_url
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory
from .media import ffprobe

API_KEY = "tgp-test-key-0123456789abcdef"
SCRIPT = """\
# Fakes
negative_prompt: blurry, text

## 1
image: a lighthouse at dusk
negative: boats
The lamp is lit.

## 2
image: a storm at sea
The waves rise.

## 3
image: a harbour at dawn
negative: text, people
The boats come home.

## 4
The end.
"""


@pytest.fixture
def together_settings(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TOGETHER_API_KEY", API_KEY)

    def factory(fake: FakeTogether, **images: Any) -> Any:
        return make_settings(
            images={"provider": "together", "base_url": fake.base_url, "negative_prompt": "ugly",
                    "backoff_base": 0.05, "backoff_max": 0.5, **images},
        )  # fmt: skip

    return factory


async def render(settings: Any, out: Path, text: str = SCRIPT) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    plan = plan_render(parse_script(text), settings)
    await render_plan(plan, settings, out, on_event=events.append)
    return events


async def test_images_one_at_a_time_with_negative_prompt_as_a_field(
    together_settings: Any, tmp_path: Path
) -> None:
    async with FakeTogether(latency=0.1, expected_key=API_KEY) as fake:
        await render(together_settings(fake), tmp_path / "v.mp4")
    assert fake.overlaps == 0 and fake.max_in_flight == 1
    assert len(fake.requests) == 4
    bodies = [r.json for r in fake.requests]
    assert [b["prompt"] for b in bodies] == [
        "a lighthouse at dusk", "a storm at sea", "a harbour at dawn", "The end.",
    ]  # fmt: skip
    assert [b["negative_prompt"] for b in bodies] == [
        "ugly, blurry, text, boats", "ugly, blurry, text", "ugly, blurry, text, people",
        "ugly, blurry, text",
    ]  # fmt: skip
    for body in bodies:
        assert body["model"] == "black-forest-labs/FLUX.1-schnell"
        assert (body["width"], body["height"], body["n"]) == (576, 1024, 1)
        assert (body["response_format"], body["output_format"]) == ("base64", "png")
        assert body["steps"] == 4  # FLUX.1-schnell's own default: each step is billed
        assert isinstance(body["seed"], int)
        assert "ugly" not in body["prompt"] and "blurry" not in body["prompt"]
    for earlier, later in zip(fake.requests, fake.requests[1:], strict=False):
        assert earlier.t_end is not None and later.t_start >= earlier.t_end  # never two at once
    video = ffprobe(tmp_path / "v.mp4").stream("video")
    assert (video["width"], video["height"]) == (1080, 1920)


async def test_more_concurrency_than_the_free_tier_is_caught(
    together_settings: Any, tmp_path: Path
) -> None:
    """The fake really does notice overlapping requests (this is what Semaphore(1) prevents)."""
    async with FakeTogether(latency=0.2) as fake:
        await render(together_settings(fake, max_concurrency=4), tmp_path / "v.mp4")
    assert fake.overlaps > 0


async def test_429_with_retry_after_is_waited_out(together_settings: Any, tmp_path: Path) -> None:
    async with FakeTogether(script_of_statuses=[429], retry_after=0.3) as fake:
        await render(together_settings(fake), tmp_path / "v.mp4")
    statuses = [r.status for r in fake.requests]
    assert statuses == [429, 200, 200, 200, 200]
    first, retry = fake.requests[0], fake.requests[1]
    assert first.t_end is not None and retry.t_start - first.t_end >= 0.28
    assert ffprobe(tmp_path / "v.mp4").duration > 2


async def test_server_errors_and_hangs_are_retried(together_settings: Any, tmp_path: Path) -> None:
    async with FakeTogether(script_of_statuses=[500, "hang", 503, 429]) as fake:
        settings = together_settings(fake, timeout=0.5)
        events = await render(settings, tmp_path / "v.mp4")
    assert [r.status for r in fake.requests][:4] == [500, 499, 503, 429]
    assert sum(r.status == 200 for r in fake.requests) == 4
    assert fake.overlaps == 0
    waits = [e.reason for e in events if isinstance(e, RetryWait)]
    assert waits[0].startswith("Together.ai had a server error (HTTP 500); trying again in ")
    assert waits[1].startswith("Together.ai did not answer within 0.5 s; trying again in ")
    assert waits[2].startswith("Together.ai is out of capacity (HTTP 503); trying again in ")
    assert waits[3].startswith("waiting for Together's rate limit (")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "Together.ai rejected the API key"),
        (402, "no credit left"),
        (400, "Together.ai refused the request (HTTP 400): Input validation error"),
        (403, "refused access to the model"),
        (422, "Together.ai's safety checker refused scene 1's image; reword that scene's image"),
        (404, "does not offer the model black-forest-labs/FLUX.1-schnell (HTTP 404)"),
    ],
)
async def test_permanent_errors_fail_at_once_in_plain_words(
    together_settings: Any, tmp_path: Path, status: int, words: str
) -> None:
    async with FakeTogether(script_of_statuses=[status]) as fake:
        with pytest.raises(SceneFailed) as caught:
            await render(together_settings(fake), tmp_path / "v.mp4")
    assert len(fake.requests) == 1  # not retried
    assert (caught.value.scene, caught.value.stage) == (1, "image")
    assert words in str(caught.value)
    assert str(caught.value).startswith("scene 1, image: ")
    assert API_KEY not in str(caught.value)
    if status != 422:  # only the safety checker's refusal is about the prompt's words
        assert "reword" not in str(caught.value).lower()
    if status == 404:
        assert "reelbot doctor --online" in str(caught.value)


async def test_retries_are_bounded(together_settings: Any, tmp_path: Path) -> None:
    async with FakeTogether(script_of_statuses=[500] * 10) as fake:
        with pytest.raises(SceneFailed, match="gave up after 3 attempts"):
            await render(together_settings(fake, max_attempts=3), tmp_path / "v.mp4")
    assert len(fake.requests) == 3


async def test_the_key_is_never_logged(
    together_settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeTogether(script_of_statuses=[429, 401]) as fake:
        with pytest.raises(SceneFailed):
            await render(together_settings(fake), tmp_path / "v.mp4")
    assert caplog.records, "DEBUG logging produced nothing to check"
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    assert API_KEY not in caplog.text


# ---------------------------------------------------------------- speech


async def test_every_scene_is_spoken_at_once(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(latency=0.4) as speech:
        settings = make_settings(tts={"provider": "openai", "base_url": speech.base_url,
                                      "voice": "af_bella", "speed": 1.25})  # fmt: skip
        events = await render(settings, tmp_path / "v.mp4")
    assert len(speech.requests) == 4
    assert speech.max_in_flight == 4  # all scenes' requests were in flight together
    for request in speech.requests:
        assert request.json["voice"] == "af_bella"
        assert request.json["response_format"] == "wav" and request.json["speed"] == 1.25
    audio_done = (Stage.AUDIO, Status.DONE)
    measured = {
        e.scene: e.seconds
        for e in events
        if isinstance(e, SceneEvent) and (e.stage, e.status) == audio_done
    }
    for request in speech.requests:
        scene = next(n for n, s in enumerate(parse_script(SCRIPT).scenes, 1)
                     if s.narration == request.json["input"])  # fmt: skip
        assert measured[scene] == pytest.approx(speech.duration_for(request.json["input"], 1.25),
                                                abs=0.01)  # fmt: skip


async def test_a_speech_server_that_is_down_is_named(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    url = closed_base_url()
    settings = make_settings(tts={"provider": "openai", "base_url": url, "max_attempts": 2})
    with pytest.raises(SceneFailed) as caught:
        await render(settings, tmp_path / "v.mp4")
    assert caught.value.stage == "audio"
    assert f"the speech server at {url} could not be reached" in str(caught.value)


async def test_falls_back_to_espeak_when_configured(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(down=True) as speech:
        settings = make_settings(tts={"provider": "openai", "base_url": speech.base_url,
                                      "max_attempts": 1, "fallback_to_espeak": True})  # fmt: skip
        await render(settings, tmp_path / "v.mp4")
    assert len(speech.requests) == 4
    assert ffprobe(tmp_path / "v.mp4").duration > 3


# ---------------------------------------------------------------- the schedule


async def test_clips_start_while_later_images_are_still_being_made(
    together_settings: Any, tmp_path: Path
) -> None:
    async with FakeTogether(latency=0.8) as fake, FakeSpeech(latency=0.1) as speech:
        settings = together_settings(fake).model_copy(
            update={"tts": together_settings(fake).tts.model_copy(
                update={"provider": "openai", "base_url": speech.base_url})}
        )  # fmt: skip
        events = await render(settings, tmp_path / "v.mp4")

    def when(scene: int, stage: Stage, status: Status) -> float:
        return next(e.t for e in events if isinstance(e, SceneEvent)
                    and (e.scene, e.stage, e.status) == (scene, stage, status))  # fmt: skip

    # Scene 1's clip is encoding before scene 2's image has come back.
    assert when(1, Stage.CLIP, Status.STARTED) < when(2, Stage.IMAGE, Status.DONE)
    # Images are strictly one after another, in scene order.
    for n in (1, 2, 3):
        assert when(n + 1, Stage.IMAGE, Status.STARTED) >= when(n, Stage.IMAGE, Status.DONE)
    # All speech was started before the first image came back.
    assert max(when(n, Stage.AUDIO, Status.STARTED) for n in (1, 2, 3, 4)) < when(
        1, Stage.IMAGE, Status.DONE
    )
