"""The persistent render queue, in-process: a real SQLite file, real renders, loopback fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.admission import JobRequest
from bot.config import BotSettings
from bot.errors import QueueFull, UserLimitReached
from bot.jobs import JobRunner
from bot.store import Job, JobOptions, JobState, Store
from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.render import RenderResult
from tests.fakes.audio import make_wav
from tests.fakes.server import CLIENT_CLOSED
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

from .media import ffprobe
from .test_render import child_processes

SCRIPT = """\
# Queue
## 1
image: red
One small scene.
## 2
image: green
Another small scene.
## 3
image: blue
The last small scene.
"""


class RecordingObserver:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.events: list[ProgressEvent] = []
        self.outcome: str | None = None
        self.done = asyncio.Event()

    def queued(self, job: Job) -> None:
        self.outcome = "queued"

    async def started(self, job: Job) -> None:
        self.outcome = "started"

    def event(self, event: ProgressEvent) -> None:
        self.events.append(event)

    async def finished(self, job: Job, result: RenderResult) -> bool:
        self.outcome, self.result = "finished", result
        self.done.set()
        return False  # not delivered: the runner keeps the video for the test to probe

    async def failed(self, job: Job, reason: str) -> None:
        self.outcome, self.reason = "failed", reason
        self.done.set()

    async def cancelled(self, job: Job, by: int | None) -> None:
        self.outcome = "cancelled"
        self.done.set()


class Harness:
    def __init__(self, settings: BotSettings, db: Path) -> None:
        self.settings = settings
        self.db = db
        self.observers: dict[int, RecordingObserver] = {}

    def observer_for(self, job: Job) -> RecordingObserver:
        self.observers[job.id] = RecordingObserver(job)
        return self.observers[job.id]

    async def __aenter__(self) -> JobRunner:
        self.store = await Store.open(self.db)
        self.client = httpx.AsyncClient()
        self.runner = JobRunner(self.store, self.settings, self.client,
                                observer_for=self.observer_for)  # fmt: skip
        return self.runner

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.close()
        await self.client.aclose()
        await self.store.close()

    async def wait_state(self, job_id: int, *states: JobState, timeout: float = 60) -> Job:
        async with asyncio.timeout(timeout):
            while True:
                job = await self.store.get_job(job_id)
                assert job is not None
                if job.state in states:
                    return job
                await asyncio.sleep(0.05)


def request(script: str = SCRIPT, user: int = 7, **options: Any) -> JobRequest:
    return JobRequest(guild_id=1, channel_id=2, user_id=user, script=script, filename="s.md",
                      options=JobOptions(**options))  # fmt: skip


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTogether, FakeSpeech]]:
    async with FakeTogether(latency=0.05) as together, FakeSpeech() as speech:
        yield together, speech


@pytest.fixture
def bot_settings(
    tmp_path: Path, fakes: tuple[FakeTogether, FakeSpeech], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., BotSettings]:
    together, speech = fakes
    monkeypatch.setenv("TOGETHER_API_KEY", "key")

    def factory(**sections: dict[str, Any]) -> BotSettings:
        base: dict[str, Any] = {
            "storage": {"data_dir": str(tmp_path / "data")},
            "images": {"provider": "together", "base_url": together.base_url},
            "tts": {"provider": "openai", "base_url": speech.base_url},
        }
        return BotSettings(**(base | sections))

    return factory


async def test_a_job_runs_and_its_artifacts_are_recorded(
    bot_settings: Callable[..., BotSettings], tmp_path: Path
) -> None:
    harness = Harness(bot_settings(), tmp_path / "bot.sqlite3")
    async with harness as runner:
        await runner.start()
        job = await runner.submit(request())
        assert job.state is JobState.QUEUED and job.scene_count == 3
        finished = await harness.wait_state(job.id, JobState.DONE)
        scenes = await harness.store.scenes(job.id)
    observer = harness.observers[job.id]
    assert observer.outcome == "finished"
    assert finished.output is not None and ffprobe(Path(finished.output)).duration > 2
    assert finished.events is not None and '"JobDone"' in finished.events
    for scene in scenes:
        assert scene.audio and scene.image and scene.clip
        assert Path(scene.clip).is_file()
    assert [s.seed for s in scenes] == [r.json["seed"] for r in harness_requests(harness)]


def harness_requests(harness: Harness) -> list[Any]:
    base_url = harness.settings.images.base_url
    return [r for r in FAKES_BY_URL[base_url].requests if r.status == 200]


FAKES_BY_URL: dict[str, FakeTogether] = {}


@pytest.fixture(autouse=True)
def _index_fakes(fakes: tuple[FakeTogether, FakeSpeech]) -> None:
    FAKES_BY_URL[fakes[0].base_url] = fakes[0]


async def test_queue_and_user_limits_are_refused_clearly(
    bot_settings: Callable[..., BotSettings], tmp_path: Path
) -> None:
    # One render at a time: each job's estimate is after the one before it.
    settings = bot_settings(queue={"max_total": 3, "per_user_limit": 2,
                                   "max_concurrent_renders": 1})  # fmt: skip
    async with Harness(settings, tmp_path / "bot.sqlite3") as runner:  # not started: jobs wait
        await runner.submit(request(user=1))
        await runner.submit(request(user=1))
        with pytest.raises(UserLimitReached, match="already have 2 renders"):
            await runner.submit(request(user=1))
        await runner.submit(request(user=2))
        with pytest.raises(QueueFull, match="queue is full"):
            await runner.submit(request(user=3))
        entries = await runner.queue()
    assert [e.position for e in entries] == [1, 2, 3]
    assert entries[0].estimate < entries[1].estimate < entries[2].estimate


async def test_cancel_stops_a_running_render_and_its_processes(
    bot_settings: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = bot_settings(video={"pad_seconds": 5.0, "preset": "slow"})
    harness = Harness(settings, tmp_path / "bot.sqlite3")
    async with harness as runner:
        await runner.start()
        job = await runner.submit(request())
        async with asyncio.timeout(60):
            while not any(
                isinstance(e, SceneEvent) and (e.stage, e.status) == (Stage.CLIP, Status.STARTED)
                for e in getattr(harness.observers.get(job.id), "events", [])
            ):
                await asyncio.sleep(0.02)
        assert "ffmpeg" in child_processes()
        cancelled = await runner.cancel(job.id)
        assert cancelled.state is JobState.CANCELLED
        assert child_processes() == []
    assert harness.observers[job.id].outcome == "cancelled"


async def test_an_edited_rerender_makes_only_the_changed_scene(
    bot_settings: Callable[..., BotSettings],
    tmp_path: Path,
    fakes: tuple[FakeTogether, FakeSpeech],
) -> None:
    together, speech = fakes
    harness = Harness(bot_settings(), tmp_path / "bot.sqlite3")
    async with harness as runner:
        await runner.start()
        first = await runner.submit(request())
        await harness.wait_state(first.id, JobState.DONE)
        images, speeches = len(together.requests), len(speech.requests)
        edited = SCRIPT.replace("image: green\nAnother small scene.", "image: teal\nA new one.")
        second = await runner.submit(request(edited))
        await harness.wait_state(second.id, JobState.DONE)
    assert len(together.requests) - images == 1
    assert together.requests[-1].json["prompt"] == "teal"
    assert len(speech.requests) - speeches == 1
    assert speech.requests[-1].json["input"] == "A new one."


async def test_a_shutdown_mid_render_resumes_without_redoing_work(
    bot_settings: Callable[..., BotSettings],
    tmp_path: Path,
    fakes: tuple[FakeTogether, FakeSpeech],
) -> None:
    together, speech = fakes
    settings = bot_settings(video={"pad_seconds": 2.0, "encoders": 1})
    first = Harness(settings, tmp_path / "bot.sqlite3")
    async with first as runner:
        await runner.start()
        job = await runner.submit(request())
        # Stop once every image exists and the first clip is done, mid-way through the clips.
        async with asyncio.timeout(60):
            while not any(
                isinstance(e, SceneEvent) and (e.stage, e.status) == (Stage.CLIP, Status.DONE)
                for e in getattr(first.observers.get(job.id), "events", [])
            ):
                await asyncio.sleep(0.02)
    interrupted = await _job(tmp_path / "bot.sqlite3", job.id)
    assert interrupted.state is JobState.QUEUED
    second = Harness(settings, tmp_path / "bot.sqlite3")
    async with second as runner:
        await runner.start()
        await second.wait_state(job.id, JobState.DONE)
    assert sorted(r.json["prompt"] for r in together.requests) == ["blue", "green", "red"]
    assert len(speech.requests) == 3
    resumed = second.observers[job.id].events
    reused = {(e.scene, e.stage) for e in resumed
              if isinstance(e, SceneEvent) and e.status is Status.CACHED}  # fmt: skip
    assert {(n, Stage.IMAGE) for n in (1, 2, 3)} <= reused
    assert any(stage is Stage.CLIP for _, stage in reused)  # the finished clip was kept


async def _job(db: Path, job_id: int) -> Job:
    async with await Store.open(db) as store:
        job = await store.get_job(job_id)
    assert job is not None
    return job


async def test_a_job_whose_music_was_evicted_fails_in_plain_words(
    bot_settings: Callable[..., BotSettings], tmp_path: Path
) -> None:
    music = tmp_path / "evicted.wav"
    music.write_bytes(make_wav(2.0))
    harness = Harness(bot_settings(), tmp_path / "bot.sqlite3")
    async with harness as runner:
        job = await runner.submit(request(music=str(music)))  # queued, not started yet
        music.unlink()  # the cache's size cap removed it while the job waited
        await runner.start()
        failed = await harness.wait_state(job.id, JobState.FAILED)
    assert failed.error is not None and "music file is no longer kept" in failed.error
    assert harness.observers[job.id].reason == failed.error


async def test_a_run_past_the_job_timeout_is_stopped_and_says_so(
    bot_settings: Callable[..., BotSettings], fakes: tuple[FakeTogether, FakeSpeech]
) -> None:
    fakes[1].latency = 60.0  # the narration would come long after the job's time is up
    speech = fakes[1]
    settings = bot_settings(queue={"job_timeout": 1.0})
    harness = Harness(settings, settings.storage.data_dir / "bot.sqlite3")
    async with harness as runner:
        await runner.start()
        job = await runner.submit(request())
        failed = await harness.wait_state(job.id, JobState.FAILED)
        # Its slot is freed for the next job (the state is written just before the run ends).
        async with asyncio.timeout(30):
            while runner.is_running(job.id):
                await asyncio.sleep(0.05)
        async with asyncio.timeout(30):  # the server sees the requests cut off
            while speech.in_flight:
                await asyncio.sleep(0.02)
    assert failed.error == (
        "the render ran longer than 1 s, the limit for one job ([queue] job_timeout), "
        "and was stopped"
    )
    observer = harness.observers[job.id]
    assert observer.outcome == "failed" and observer.reason == failed.error
    assert speech.requests and all(r.status == CLIENT_CLOSED for r in speech.requests)
    assert failed.events is not None and '"JobStarted"' in failed.events  # kept for /timeline


async def test_a_job_waiting_for_review_is_not_running_and_does_not_time_out(
    bot_settings: Callable[..., BotSettings], tmp_path: Path
) -> None:
    harness = Harness(bot_settings(queue={"job_timeout": 120.0}), tmp_path / "bot.sqlite3")
    async with harness as runner:
        await runner.start()
        job = await runner.submit(request(review=True))
        await harness.wait_state(job.id, JobState.REVIEW)
        # Its run ends once the review round is recorded (the state is written just before):
        # no task, so no timeout: the wait for people is not a run.
        async with asyncio.timeout(30):
            while runner.is_running(job.id):
                await asyncio.sleep(0.05)
        assert (await harness.store.job(job.id)).state is JobState.REVIEW
        _, approval = await runner.approve_all(job.id)
        assert approval.queued
        runner.wake()
        done = await harness.wait_state(job.id, JobState.DONE, JobState.FAILED)
    assert done.state is JobState.DONE and done.error is None
    assert harness.observers[job.id].outcome == "finished"
