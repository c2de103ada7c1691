"""The time-left estimate on real renders it has not learnt from: a fresh store, a few renders
of other scripts (the bot measures its stages), then a new script, whose estimates at 25 %,
50 % and 75 % of its render must be within ±25 % of the time it actually had left.

Real espeak-ng and ffmpeg; Together is the loopback fake with a set latency, large enough that
the images (one at a time, as in production) are most of the render even on a loaded machine.
Every time is read from the render's own event timestamps: the check compares two durations
measured within one run, never a duration against a constant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bot.admission import JobRequest
from bot.config import BotSettings
from bot.jobs import JobRunner, QueueEntry, TimedObserver
from bot.store import Job, JobOptions, JobState, Store
from pipeline.estimate import Speed
from pipeline.events import JobDone, ProgressEvent
from pipeline.render import RenderResult
from tests.fakes.together import FakeTogether

IMAGE_LATENCY = 4.0  # seconds the fake Together takes per image
TOLERANCE = 0.25


def script(tag: str, words: list[str]) -> str:
    """Scenes with their own images (a tag no other script shares) and narrations."""
    scenes = "".join(f"## {n}\nimage: {tag} view {n}\n{text}\n"
                     for n, text in enumerate(words, 1))  # fmt: skip
    return f"# {tag}\n{scenes}"


LEARNING = [
    script("harbour", ["Boats rest in the harbour.", "Gulls call over the water at dawn.",
                       "The tide turns slowly."]),
    script("forest", ["Tall pines stand in the mist.", "A deer crosses the path.",
                      "Light falls through the leaves.", "The wind moves the branches."]),
    script("desert", ["Dunes stretch to the horizon under a pale sky.", "Night comes fast."]),
]  # fmt: skip
NEW = script("city", [
    "Morning traffic fills the wide avenue.",
    "A tram rattles past the old market hall.",
    "Street sellers set out fruit in bright rows.",
    "Office windows catch the rising sun.",
    "Pigeons gather on the fountain's rim.",
    "Evening lights come on one by one along the river.",
])  # fmt: skip


@dataclass
class Timed:
    """A front end that records each estimate with the event it came with."""

    remaining: float | None = None
    seen: list[tuple[float, float | None]] = field(default_factory=list)  # (t, estimate)
    places: list[int] = field(default_factory=list)
    end: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None

    def queued(self, job: Job) -> None:
        pass

    def place(self, entry: QueueEntry) -> None:
        self.places.append(entry.position)

    def estimate(self, remaining: float) -> None:
        self.remaining = remaining

    async def started(self, job: Job) -> None:
        pass

    def event(self, event: ProgressEvent) -> None:
        self.seen.append((event.t, self.remaining))
        if isinstance(event, JobDone):
            self.end = event.t

    async def finished(self, job: Job, result: RenderResult) -> bool:
        self.done.set()
        return True

    async def failed(self, job: Job, reason: str) -> None:
        self.failure = reason
        self.done.set()

    async def cancelled(self, job: Job, by: int | None) -> None:
        self.done.set()


class Front:
    def __init__(self) -> None:
        self.observers: dict[int, Timed] = {}

    def observer_for(self, job: Job) -> Timed:
        return self.observers.setdefault(job.id, Timed())


@pytest.fixture
async def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[JobRunner]:
    monkeypatch.setenv("TOGETHER_API_KEY", "key")
    async with FakeTogether(latency=IMAGE_LATENCY) as together, httpx.AsyncClient() as client:
        settings = BotSettings(
            storage={"data_dir": str(tmp_path / "data")},
            images={"provider": "together", "base_url": together.base_url},
            tts={"provider": "espeak"},
            video={"fps": 10, "pad_seconds": 0.2, "aspect": "16:9", "preset": "ultrafast"},
            captions={"enabled": False},
            sound={"normalize": False},
            queue={"max_total": 100, "per_user_limit": 100, "max_concurrent_renders": 1},
            rate_limit={"per_user": 100, "per_guild": 100},
        )
        store = await Store.open(tmp_path / "bot.sqlite3")  # a fresh store: nothing measured
        front = Front()
        made = JobRunner(store, settings, client, observer_for=front.observer_for)
        made.front = front  # type: ignore[attr-defined]  # the test reads its observers
        await made.start()
        try:
            yield made
        finally:
            await made.close()
            await store.close()


async def render(runner: JobRunner, text: str, user: int) -> Timed:
    job = await runner.submit(JobRequest(guild_id=1, channel_id=2, user_id=user, script=text,
                                         filename="s.md", options=JobOptions()))  # fmt: skip
    observer: Timed = runner.front.observers[job.id]  # type: ignore[attr-defined]
    async with asyncio.timeout(240):
        await observer.done.wait()
    assert observer.failure is None, observer.failure
    async with asyncio.timeout(30):  # the runner records the outcome after delivering
        while runner.is_running(job.id):
            await asyncio.sleep(0.02)
    assert (await runner.store.job(job.id)).state is JobState.DONE
    return observer


def estimate_at(observer: Timed, share: float) -> tuple[float, float]:
    """The estimate shown at `share` of the render (the latest one made by then), and the time
    the render actually had left when it was made."""
    assert observer.end is not None
    at = share * observer.end
    t, estimate = [(t, e) for t, e in observer.seen if t <= at and e is not None][-1]
    return estimate, observer.end - t


async def test_the_estimate_is_within_a_quarter_of_the_time_left(runner: JobRunner) -> None:
    for user, text in enumerate(LEARNING, 1):
        await render(runner, text, user)
    rates = await runner.timings.rates()
    # What it learnt is what it measured: the images' latency, not the defaults.
    assert rates.image == pytest.approx(IMAGE_LATENCY, rel=0.5)
    kept = await runner.store.fetch("SELECT stage, COUNT(*) FROM stage_timings GROUP BY stage")
    assert {Speed(str(r[0])) for r in kept} == set(Speed)

    observer = await render(runner, NEW, 99)
    errors = {}
    for share in (0.25, 0.5, 0.75):
        estimate, actual = estimate_at(observer, share)
        errors[share] = estimate / actual - 1
    print("estimate errors at 25/50/75 %:", {k: f"{v:+.1%}" for k, v in errors.items()})
    assert all(abs(e) <= TOLERANCE for e in errors.values()), errors


async def test_a_queued_job_is_told_its_place_as_the_jobs_ahead_leave(runner: JobRunner) -> None:
    # One render slot: the first runs, the others wait; cancelling the second moves the third.
    jobs = [
        await runner.submit(
            JobRequest(
                guild_id=1,
                channel_id=2,
                user_id=10 + n,
                script=text,
                filename="s.md",
                options=JobOptions(),
            )
        )
        for n, text in enumerate(LEARNING)
    ]
    front = runner.front  # type: ignore[attr-defined]
    last = front.observers[jobs[2].id]
    async with asyncio.timeout(60):
        while last.places[-1:] != [2]:
            await asyncio.sleep(0.02)
    await runner.cancel(jobs[1].id, by=1)
    async with asyncio.timeout(60):
        while last.places[-1:] != [1]:
            await asyncio.sleep(0.02)
    assert front.observers[jobs[1].id].places == [1]
    for job in (jobs[0], jobs[2]):
        async with asyncio.timeout(240):
            await front.observers[job.id].done.wait()
    assert isinstance(front.observers[jobs[2].id], TimedObserver)
