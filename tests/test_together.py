"""The Together.ai client against the fake that checks Together's published contract: the
answer's real image type, rate limits waited out by time, and image URLs fetched safely."""

from __future__ import annotations

import email.utils
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from PIL import Image
from rich.console import Console

from pipeline.cli import _table
from pipeline.config import ImagesConfig
from pipeline.errors import SceneFailed
from pipeline.events import JobStarted, ProgressEvent, RetryWait, SceneEvent, Stage, Status
from pipeline.images.together import MAX_ANSWER_BYTES, rate_limit_wait
from pipeline.plan import plan_render
from pipeline.progress import RenderProgress
from pipeline.render import render_plan
from pipeline.script import parse_script
from tests.fakes.server import closed_base_url
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory
from .media import ffprobe

KEY = "tgp-test-key-together"
TWO = "# Two\n## 1\nimage: a red door\nOne.\n## 2\nimage: a blue door\nTwo.\n"
# Cheap clips: the point is the image requests, not the encode.
FAST_VIDEO = {"fps": 10, "preset": "ultrafast"}


@pytest.fixture
def settings_for(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)

    def factory(fake: FakeTogether, **images: Any) -> Any:
        return make_settings(
            images={"provider": "together", "base_url": fake.base_url, "backoff_base": 0.05,
                    "backoff_max": 0.2, **images},
            video=FAST_VIDEO, captions={"enabled": False}, sound={"normalize": False},
        )  # fmt: skip

    return factory


async def render(settings: Any, out: Path, text: str = TWO) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    await render_plan(plan_render(parse_script(text), settings), settings, out,
                      on_event=events.append)  # fmt: skip
    return events


def image_paths(events: list[ProgressEvent]) -> list[Path]:
    """Each scene's picture, in scene order (cached scenes may report in any order)."""
    found = {
        e.scene: e.path
        for e in events
        if isinstance(e, SceneEvent)
        and e.stage is Stage.IMAGE
        and e.status in (Status.DONE, Status.CACHED)
        and e.path is not None
    }
    return [found[scene] for scene in sorted(found)]


# ------------------------------------------------------------ what comes back


async def test_a_jpeg_answer_is_kept_and_named_as_a_jpeg(settings_for: Any, tmp_path: Path) -> None:
    """The service may answer JPEG whatever is asked: the file is named for its bytes."""
    async with FakeTogether(answer_format="JPEG", expected_key=KEY) as fake:
        settings = settings_for(fake)
        first = await render(settings, tmp_path / "a.mp4")
        again = await render(settings, tmp_path / "b.mp4")
    assert [r.json["output_format"] for r in fake.requests] == ["png", "png"]
    assert [r.image_format for r in fake.requests] == ["JPEG", "JPEG"]
    made = image_paths(first)
    assert len(made) == 2 and all(p.suffix == ".jpg" for p in made)
    for path in made:
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as picture:
            assert picture.format == "JPEG" and picture.size == (576, 1024)
    assert image_paths(again) == made and len(fake.requests) == 2  # found again in the cache
    assert ffprobe(tmp_path / "a.mp4").duration > 1


async def test_a_png_answer_is_named_as_a_png(settings_for: Any, tmp_path: Path) -> None:
    async with FakeTogether(expected_key=KEY) as fake:
        events = await render(settings_for(fake), tmp_path / "a.mp4")
    assert [r.image_format for r in fake.requests] == ["PNG", "PNG"]  # what was asked
    made = image_paths(events)
    assert [p.suffix for p in made] == [".png", ".png"]
    for path in made:
        with Image.open(path) as picture:
            assert picture.format == "PNG"


async def test_steps_follow_the_model_unless_set(settings_for: Any, tmp_path: Path) -> None:
    assert ImagesConfig().model_steps == 4  # FLUX.1-schnell
    assert ImagesConfig(model="black-forest-labs/FLUX.1.1-pro").model_steps is None
    assert ImagesConfig(steps=2).model_steps == 2
    one = "# One\n## 1\nimage: a green door\nOne.\n"
    async with FakeTogether(expected_key=KEY) as fake:
        await render(settings_for(fake, model="black-forest-labs/FLUX.1.1-pro"),
                     tmp_path / "a.mp4", one)  # fmt: skip
        await render(settings_for(fake, steps=2), tmp_path / "b.mp4", one)
    pro, explicit = (r.json for r in fake.requests)
    assert "steps" not in pro  # a model without a known default: the API's own
    assert explicit["steps"] == 2


async def test_a_model_the_service_does_not_offer_is_a_404_in_plain_words(
    settings_for: Any, tmp_path: Path
) -> None:
    async with FakeTogether(expected_key=KEY) as fake:
        settings = settings_for(fake, model="black-forest-labs/FLUX.1-schnell-Free")
        with pytest.raises(SceneFailed) as caught:
            await render(settings, tmp_path / "a.mp4")
    assert [r.status for r in fake.requests] == [404]
    message = str(caught.value)
    assert "does not offer the model black-forest-labs/FLUX.1-schnell-Free" in message
    assert "reelbot doctor --online" in message


# ------------------------------------------------------------ rate limits


async def test_a_minute_of_429s_is_waited_out_across_12_scenes(
    settings_for: Any, tmp_path: Path
) -> None:
    """The service rate-limits for a while (here 3 s: the fake's "minute"), saying each time
    to wait a quarter of a second more, as a Unix time in x-ratelimit-reset. Every wait is a
    progress event; the 429s are not counted as attempts (two would be allowed)."""
    script = "# Twelve\n" + "".join(f"## {n}\nimage: door {n}\nScene {n}.\n" for n in range(1, 13))
    window = 3.0
    async with FakeTogether(
        expected_key=KEY, rate_limited_for=window, ratelimit_reset=0.25, reset_as="unix"
    ) as fake:
        events = await render(settings_for(fake, max_attempts=2), tmp_path / "v.mp4", script)
    limited = [r for r in fake.requests if r.status == 429]
    made = [r for r in fake.requests if r.status == 200]
    assert fake.rate_limited == len(limited) >= 5  # many 429s, each one waited out
    assert len(made) == 12 and fake.overlaps == 0
    assert made[0].t_start - fake.requests[0].t_start >= window  # it lasted the whole window
    waits = [e for e in events if isinstance(e, RetryWait)]
    assert len(waits) == len(limited)
    assert all(w.scene == 1 and w.stage is Stage.IMAGE for w in waits)
    assert all(w.reason.startswith("waiting for Together's rate limit (0.") for w in waits)
    # Read as a moment (at most 0.25 s away), not as 1.8e9 seconds to wait.
    assert all(0 < w.seconds <= 0.25 for w in waits)
    assert len(image_paths(events)) == 12
    assert ffprobe(tmp_path / "v.mp4").duration > 12


async def test_x_ratelimit_reset_in_seconds_is_waited_out(
    settings_for: Any, tmp_path: Path
) -> None:
    async with FakeTogether(expected_key=KEY, script_of_statuses=[429, 429],
                            ratelimit_reset=0.4) as fake:  # fmt: skip
        events = await render(settings_for(fake), tmp_path / "v.mp4")
    first, second, third = fake.requests[:3]
    assert [r.status for r in fake.requests] == [429, 429, 200, 200]
    assert first.t_end is not None and second.t_start - first.t_end >= 0.38
    assert second.t_end is not None and third.t_start - second.t_end >= 0.38
    reasons = [e.reason for e in events if isinstance(e, RetryWait)]
    assert reasons == ["waiting for Together's rate limit (0.4 s)"] * 2


async def test_rate_limit_waits_are_budgeted_by_time(settings_for: Any, tmp_path: Path) -> None:
    async with FakeTogether(expected_key=KEY, rate_limited_for=60, ratelimit_reset=0.25) as fake:
        with pytest.raises(SceneFailed) as caught:
            await render(settings_for(fake, rate_limit_wait=0.6), tmp_path / "v.mp4")
    message = str(caught.value)
    assert message.startswith("scene 1, image: Together.ai kept rate-limiting scene 1's image")
    assert "rate_limit_wait" in message
    assert 2 <= fake.rate_limited <= 4  # 0.6 s of 0.25 s waits, then it stopped asking
    assert caught.value.cause.retryable  # type: ignore[attr-defined]  # an ImageError


def test_the_wait_is_read_from_the_headers_by_the_documented_rule() -> None:
    now = 1_800_000_000.0

    def wait(**headers: str) -> float | None:
        return rate_limit_wait(httpx.Headers(headers), now)

    assert wait() is None
    assert wait(**{"Retry-After": "7"}) == 7
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert wait(**{"Retry-After": date}) == pytest.approx(10)  # an HTTP date: the time until
    assert wait(**{"x-ratelimit-reset": "40"}) == 40  # seconds to wait
    assert wait(**{"x-ratelimit-reset": "0.25"}) == 0.25
    assert wait(**{"x-ratelimit-reset": str(now + 40)}) == 40  # a Unix time (>= 10^9)
    assert wait(**{"x-ratelimit-reset": str(now - 5)}) == 0  # already past
    assert wait(**{"Retry-After": "3", "x-ratelimit-reset": "40"}) == 3  # Retry-After first
    assert wait(**{"x-ratelimit-reset": "soon"}) is None
    assert wait(**{"x-ratelimit-reset": "nan"}) is None


def test_a_wait_is_shown_in_the_terminal_table_until_the_stage_moves_on() -> None:
    progress = RenderProgress()
    progress.apply(JobStarted(0.0, "T", 2))
    progress.apply(SceneEvent(0.1, 1, Stage.IMAGE, Status.STARTED))
    progress.apply(RetryWait(0.2, 1, Stage.IMAGE, 40.0, "waiting for Together's rate limit (40 s)"))
    console = Console(width=120, record=True)
    console.print(_table(progress, 1.0))
    assert "image: waiting for Together's rate limit (40 s)" in console.export_text()
    progress.apply(SceneEvent(0.3, 1, Stage.AUDIO, Status.DONE))  # another stage: still waiting
    assert progress.scenes[0].note
    progress.apply(SceneEvent(40.3, 1, Stage.IMAGE, Status.DONE))
    assert progress.scenes[0].note == ""


# ------------------------------------------------------------ image URLs


async def test_an_image_url_answer_is_fetched_and_retried(
    settings_for: Any, tmp_path: Path
) -> None:
    async with FakeTogether(expected_key=KEY, answer_url=True) as fake:
        fake.file_faults = [503]  # the file host fails once
        events = await render(settings_for(fake), tmp_path / "v.mp4")
    assert len(fake.file_requests) == 3  # scene 1's file twice (one 503), scene 2's once
    assert [p.suffix for p in image_paths(events)] == [".png", ".png"]
    assert fake.file_auth == [None, None, None]  # the key goes to the API only


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file:///etc/passwd", "will not fetch (file:///etc/passwd): only http and https"),
        ("ftp://127.0.0.1/x.png", "only http and https"),
        (closed_base_url() + "/x.png", "could not be fetched from 127.0.0.1: it could not be "
         "reached (ConnectError); gave up after 2 attempts"),
    ],
)  # fmt: skip
async def test_an_image_url_is_fetched_only_over_http_and_a_dead_host_is_said_plainly(
    settings_for: Any, tmp_path: Path, url: str, words: str
) -> None:
    async with FakeTogether(expected_key=KEY, answer_url=True, image_url=lambda _: url) as fake:
        with pytest.raises(SceneFailed) as caught:
            await render(settings_for(fake, max_attempts=2), tmp_path / "v.mp4")
    message = str(caught.value)
    assert words in message and "\n" not in message
    assert "unexpected error" not in message
    assert caught.value.cause.retryable  # type: ignore[attr-defined]  # an ImageError
    assert fake.successes == 1  # one image was made; reelbot did not take it from elsewhere


async def test_an_image_url_answer_over_the_size_cap_is_refused(
    settings_for: Any, tmp_path: Path
) -> None:
    """A file host that announces more than the cap (48 MB) is not read: the answer is refused
    as it would be from the API itself."""

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = MAX_ANSWER_BYTES + 1
        await response.prepare(request)
        await response.write(b"\x89PNG\r\n\x1a\n")
        return response

    app = web.Application()
    app.router.add_get("/huge.png", huge)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with FakeTogether(
            expected_key=KEY,
            answer_url=True,
            image_url=lambda _: f"http://127.0.0.1:{port}/huge.png",
        ) as fake:
            with pytest.raises(SceneFailed) as caught:
                await render(settings_for(fake, max_attempts=2), tmp_path / "v.mp4")
    finally:
        await runner.cleanup()
    assert f"{MAX_ANSWER_BYTES + 1:,} bytes, over the 48 MB cap" in str(caught.value)
    assert caught.value.cause.retryable  # type: ignore[attr-defined]  # an ImageError
