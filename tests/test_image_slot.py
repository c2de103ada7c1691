"""The image slot is held until an image's work has really ended: a cancelled (or timed out)
render's image in flight is not hung up on, it finishes in the background and lands in the
cache, and no other request overlaps it; a graceful stop waits for it (issue 14, item 3).

FakeTogether runs with `generates_after_hangup`, as Together.ai does: an image whose client
hangs up is generated to its end all the same, and counted against the concurrency limit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import ImagesConfig, Settings
from pipeline.errors import SceneFailed
from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.image_slot import ImageKey, ImageSlot
from pipeline.images import make_images
from pipeline.plan import plan_render
from pipeline.render import Renderer, render_plan
from pipeline.script import parse_script
from pipeline.tts import make_tts
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory
from .media import ffprobe

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "tgp-test-key-0123456789abcdef"
SCRIPT = "# Slot\n## 1\nimage: a lighthouse\nThe lamp is lit.\n## 2\nimage: a storm\nWaves."


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.01)  # poll interval, under the deadline above


@pytest.fixture
def together_settings(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TOGETHER_API_KEY", API_KEY)

    def factory(fake: FakeTogether, **images: Any) -> Settings:
        return make_settings(
            images={"provider": "together", "base_url": fake.base_url, "backoff_base": 0.05,
                    "backoff_max": 0.2, **images},
            video={"fps": 10, "pad_seconds": 0.2}, captions={"enabled": False},
            sound={"normalize": False},
        )  # fmt: skip

    return factory


def image_statuses(events: list[ProgressEvent], scene: int) -> list[Status]:
    wanted = (scene, Stage.IMAGE)
    return [e.status for e in events if isinstance(e, SceneEvent) and (e.scene, e.stage) == wanted]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_stopped_render_keeps_the_slot_until_its_image_is_answered(
    together_settings: Any, tmp_path: Path, how: str
) -> None:
    async with (
        FakeTogether(latency=1.0, generates_after_hangup=True) as fake,
        httpx.AsyncClient() as client,
    ):
        settings = together_settings(fake)
        slot = ImageSlot.for_config(settings.images)  # one per process, as in the bot

        def renderer(events: list[ProgressEvent] | None = None) -> Renderer:
            return Renderer(settings, tts=make_tts(settings, client),
                            images=make_images(settings, client), image_slot=slot,
                            on_event=None if events is None else events.append)  # fmt: skip

        plan = plan_render(parse_script(SCRIPT), settings)
        deadlines: list[asyncio.Timeout] = []

        async def first_render() -> None:
            async with asyncio.timeout(None) as deadline:  # a caller's own time limit
                deadlines.append(deadline)
                await renderer().render(plan, tmp_path / "a.mp4")

        first = asyncio.create_task(first_render())
        await wait_until(lambda: fake.in_flight == 1)  # scene 1's image is being made
        if how == "cancel":
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
        else:
            deadlines[0].reschedule(asyncio.get_running_loop().time())
            with pytest.raises(TimeoutError):
                await first
        assert slot.in_flight == 1  # still being made, in the background

        # The next render starts at once, on the same slot.
        events: list[ProgressEvent] = []
        result = await renderer(events).render(plan, tmp_path / "b.mp4")

    assert fake.overlaps == 0 and fake.max_in_flight == 1
    # Scene 1's image was asked for once, answered (not hung up on) and reused; then scene 2.
    assert [(r.json["prompt"], r.status) for r in fake.requests] == [
        ("a lighthouse", 200), ("a storm", 200),
    ]  # fmt: skip
    assert image_statuses(events, 1) == [Status.WAITING, Status.CACHED]
    assert image_statuses(events, 2) == [Status.WAITING, Status.STARTED, Status.DONE]
    assert result.scenes[0].image.is_file()
    assert abs(ffprobe(tmp_path / "b.mp4").duration - result.duration) < 0.05


async def test_a_render_stopped_between_attempts_makes_no_new_one(
    together_settings: Any, tmp_path: Path
) -> None:
    async with FakeTogether(script_of_statuses=[503], generates_after_hangup=True) as fake:
        # A long wait before the retry: the render is cancelled during it.
        settings = together_settings(fake, backoff_base=60, backoff_max=60)
        slot = ImageSlot.for_config(settings.images)
        async with httpx.AsyncClient() as client:
            render = Renderer(settings, tts=make_tts(settings, client),
                              images=make_images(settings, client), image_slot=slot)  # fmt: skip
            task = asyncio.create_task(render.render(plan_render(parse_script(SCRIPT), settings),
                                                     tmp_path / "a.mp4"))  # fmt: skip
            await wait_until(lambda: [r.status for r in fake.requests] == [503])
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await slot.drain(60) == 0  # nothing left to wait for: it stopped at once
    assert len(fake.requests) == 1


async def test_a_failed_render_keeps_the_image_it_paid_for(
    together_settings: Any, tmp_path: Path
) -> None:
    """Scene 1's narration fails while its image is being made: the render fails, the image
    still lands in the cache, and the mended script's render does not ask for it again."""
    broken = SCRIPT.replace("The lamp is lit.", "voice: xx-no-such-voice\nThe lamp is lit.")
    async with FakeTogether(latency=1.0, generates_after_hangup=True) as fake:
        settings = together_settings(fake)
        with pytest.raises(SceneFailed, match="scene 1, audio: "):
            await render_plan(plan_render(parse_script(broken), settings), settings,
                              tmp_path / "a.mp4")  # fmt: skip
        assert [(r.json["prompt"], r.status) for r in fake.requests] == [("a lighthouse", 200)]
        events: list[ProgressEvent] = []
        await render_plan(plan_render(parse_script(SCRIPT), settings), settings,
                          tmp_path / "b.mp4", on_event=events.append)  # fmt: skip
    assert [r.json["prompt"] for r in fake.requests] == ["a lighthouse", "a storm"]
    assert Status.CACHED in image_statuses(events, 1)
    assert fake.overlaps == 0


async def test_ctrl_c_in_the_cli_waits_for_the_image_in_flight(tmp_path: Path) -> None:
    script = tmp_path / "slot.md"
    script.write_text(SCRIPT)
    async with FakeTogether(latency=2.0, generates_after_hangup=True) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REELBOT_")}
        env.update({
            "TOGETHER_API_KEY": API_KEY, "REELBOT_IMAGES__PROVIDER": "together",
            "REELBOT_IMAGES__BASE_URL": fake.base_url,
            "REELBOT_STORAGE__DATA_DIR": str(tmp_path / "data"),
            "REELBOT_VIDEO__FPS": "10", "REELBOT_CAPTIONS__ENABLED": "false",
        })  # fmt: skip

        async def reelbot_render(out: Path) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pipeline.cli", "render", str(script), "-o", str(out),
                env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip

        stopped = await reelbot_render(tmp_path / "a.mp4")
        await wait_until(lambda: fake.in_flight == 1, timeout=60)
        stopped.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(stopped.communicate(), 60)
        assert stopped.returncode == 130, stderr.decode()
        said = stderr.decode()
        assert "stopped" in said and "Traceback" not in said
        assert "finishing the image of scene 1 so it is kept (at most 30 s" in said
        assert [r.status for r in fake.requests] == [200]  # waited for, not hung up on

        again = await reelbot_render(tmp_path / "b.mp4")
        _, stderr = await asyncio.wait_for(again.communicate(), 120)
        assert again.returncode == 0, stderr.decode()
    assert [r.json["prompt"] for r in fake.requests] == ["a lighthouse", "a storm"]
    assert ffprobe(tmp_path / "b.mp4").duration > 1


async def abandoned_forever(slot: ImageSlot) -> None:
    """Start work that never ends by itself in `slot`, then cancel its caller."""

    async def endless(key: ImageKey) -> None:
        await asyncio.Event().wait()

    caller = asyncio.create_task(slot.run(endless, name="image-1"))
    await wait_until(lambda: slot.in_flight == 1)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_abandoned_work_is_bounded_by_the_timeout() -> None:
    slot = ImageSlot.for_config(ImagesConfig(timeout=0.05))  # [images] timeout
    await abandoned_forever(slot)
    await wait_until(lambda: slot.in_flight == 0, timeout=10)  # cancelled past the timeout
    assert (
        await slot.run(lambda key: asyncio.sleep(0, "free again"), name="image-2") == "free again"
    )


async def test_a_graceful_stop_waits_a_bounded_time_then_cancels_the_rest() -> None:
    slot = ImageSlot.for_config(ImagesConfig(timeout=3600))
    await abandoned_forever(slot)
    assert slot.in_flight == 1  # its caller is gone; it goes on, holding the slot
    assert await slot.drain(0.05) == 1  # one had to be cancelled
    assert slot.in_flight == 0
    assert await slot.drain(0.05) == 0
