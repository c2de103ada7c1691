"""The bot's job runner in-process for tests: a real store file, real renders against the
loopback fakes, an injected clock, and a front end that only records outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bot.admission import JobRequest
from bot.config import BotSettings
from bot.jobs import JobRunner
from bot.retention import ForgottenJob
from bot.store import Job, JobOptions, JobState, Store
from pipeline.events import ProgressEvent
from pipeline.render import RenderResult
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

NOON = 1_750_075_200.0  # 2025-06-16 12:00 UTC


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def script(tag: str, scenes: int = 1) -> str:
    """A script whose images are its own (no other test's cache answers for it)."""
    body = "".join(f"## {n}\nimage: {tag} picture {n}\nThe words of {tag}, {n}.\n"
                   for n in range(1, scenes + 1))  # fmt: skip
    return f"# {tag}\n{body}"


def request(tag: str, *, user: int, guild: int = 1, scenes: int = 1, **options: Any) -> JobRequest:
    return JobRequest(guild_id=guild, channel_id=2, user_id=user, script=script(tag, scenes),
                      filename="s.md", options=JobOptions(**options))  # fmt: skip


class Recorder:
    """A front end that only records outcomes (the runner needs one to run jobs)."""

    def __init__(self) -> None:
        self.outcomes: dict[int, str] = {}
        self.keep: set[int] = set()  # jobs whose video "could not be posted" (kept)
        self.forgotten: list[ForgottenJob] = []

    def observer_for(self, job: Job) -> Recorder:
        return self

    def queued(self, job: Job) -> None:
        pass

    async def started(self, job: Job) -> None:
        self.outcomes[job.id] = "started"

    def event(self, event: ProgressEvent) -> None:
        pass

    async def finished(self, job: Job, result: RenderResult) -> bool:
        self.outcomes[job.id] = "finished"
        return job.id not in self.keep  # True: delivered, the runner removes the video

    async def on_forgotten(self, forgotten: ForgottenJob) -> None:
        self.forgotten.append(forgotten)

    async def failed(self, job: Job, reason: str) -> None:
        self.outcomes[job.id] = f"failed: {reason}"

    async def cancelled(self, job: Job, by: int | None) -> None:
        self.outcomes[job.id] = "cancelled"


@asynccontextmanager
async def runners(
    settings: BotSettings, db: Path, clock: Clock, count: int = 1, recorder: Recorder | None = None
) -> AsyncIterator[list[JobRunner]]:
    """`count` runners, each with its own Store connection to the same file (not started:
    submitted jobs wait in the queue)."""
    recorder = recorder or Recorder()
    async with httpx.AsyncClient() as client:
        stores = [await Store.open(db) for _ in range(count)]
        made = [JobRunner(store, settings, client, observer_for=recorder.observer_for,
                          on_forgotten=recorder.on_forgotten, clock=clock)
                for store in stores]  # fmt: skip
        try:
            yield made
        finally:
            for runner in made:
                await runner.close()
            for store in stores:
                await store.close()


def settings_with(
    data_dir: Path, together: FakeTogether, speech: FakeSpeech, **sections: dict[str, Any]
) -> BotSettings:
    """Fast renders against the fakes, paid (Together) images, and roomy limits unless a
    section says otherwise (TOGETHER_API_KEY must be set)."""
    base: dict[str, Any] = {
        "storage": {"data_dir": str(data_dir)},
        "images": {"provider": "together", "base_url": together.base_url},
        "tts": {"provider": "openai", "base_url": speech.base_url},
        "video": {"fps": 10, "pad_seconds": 0.2},
        "captions": {"enabled": False},
        "sound": {"normalize": False},
        "queue": {"max_total": 1000, "per_user_limit": 1000},
        "rate_limit": {"per_user": 1000, "per_guild": 1000, "images_per_day": 0,
                       "images_per_user_per_day": 0},
    }  # fmt: skip
    for name, values in sections.items():
        base[name] = base.get(name, {}) | values
    return BotSettings(**base)


async def wait_state(
    runner: JobRunner, job_id: int, state: JobState, *, after_version: int | None = None
) -> Job:
    """Until the job is in `state` (and, if given, its scene 1 is at least that version and
    delivered), polling the store with a deadline."""
    async with asyncio.timeout(90):
        while True:
            job = await runner.store.get_job(job_id)
            assert job is not None
            scene = await runner.store.scene(job_id, 1)
            fresh = after_version is None or (
                scene is not None and (scene.delivered_version or 0) >= after_version
            )
            if job.state is state and fresh and not runner.is_running(job_id):
                return job
            assert job.state is not JobState.FAILED, job.error
            await asyncio.sleep(0.05)
