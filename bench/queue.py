"""A team's queue, and more keys: how busy the image slot is kept.

**Queue efficiency.** Three 12-scene jobs are queued at once in the bot's own job runner
(`bot/jobs.py`: the store, the dispatcher, the shared image slot and encoder slots; nothing of
Discord), against the fake Together (one request at a time per key, 3 s per image). Queue
efficiency = total image time (36 images × 3 s: the image slot busy back to back) / makespan
(from the start of the runner to the last job's delivery). It is measured with the default
`[queue] max_concurrent_renders = 2` and, side by side in the same run, with the one-at-a-time
queue (1), where the image slot sits idle during every render's speech start-up, last clips,
join and sound pass. Goal (issue 18): makespan ≤ 1.05 × total image time + one render's tail,
the tail being the last job's last clip, join and sound pass (from its last image to its
video), measured in the same run.

**Two keys.** One 12-scene render with `[images] keys` naming one key, then two (each its own
account at the fake: one request at a time each): the images' span (first image started to
last image done) and the makespan.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.admission import JobRequest
from bot.config import BotSecrets, BotSettings
from bot.jobs import JobRunner
from bot.store import Job, JobOptions, Store
from pipeline.aspect import Aspect
from pipeline.config import Secrets, Settings
from pipeline.events import JobDone, ProgressEvent, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import RenderResult, render_plan
from pipeline.script import parse_script

from .fakes import BENCH_KEY, Latencies, PhotoTogether, fake_services
from .media import make_script

GOAL_SLACK = 1.05  # makespan ≤ 1.05 × total image time + one render's tail
SECOND_KEY = "BENCH_TOGETHER_KEY_2"  # the second key's variable (set while the run lasts)
SECOND_SECRET = "bench-second-key-not-real"


@dataclass
class _Job:
    """One job's progress as the runner tells it, on this process's clock."""

    started: float = 0.0
    finished: float = 0.0
    last_image: float = 0.0  # its last image came back
    events: list[tuple[float, ProgressEvent]] = field(default_factory=list)


class _Watcher:
    """The runner's front end: one observer per job, recording when it starts, when its
    images come back, and when its video is delivered."""

    def __init__(self, expected: int) -> None:
        self.jobs: dict[int, _Job] = {}
        self.failures: list[str] = []
        self.all_done = asyncio.Event()
        self.expected = expected

    def observer_for(self, job: Job) -> _JobObserver:
        self.jobs.setdefault(job.id, _Job())
        return _JobObserver(self, job.id)


class _JobObserver:
    def __init__(self, watcher: _Watcher, job_id: int) -> None:
        self.watcher = watcher
        self.job = watcher.jobs[job_id]

    def queued(self, job: Job) -> None:
        pass

    async def started(self, job: Job) -> None:
        self.job.started = time.monotonic()

    def event(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        self.job.events.append((now, event))
        if (
            isinstance(event, SceneEvent)
            and event.stage is Stage.IMAGE
            and event.status is Status.DONE
        ):
            self.job.last_image = now

    async def finished(self, job: Job, result: RenderResult) -> bool:
        self.job.finished = time.monotonic()
        self._check_done()
        return True

    async def failed(self, job: Job, reason: str) -> None:
        self.watcher.failures.append(f"job {job.id}: {reason}")
        self.job.finished = time.monotonic()
        self._check_done()

    async def cancelled(self, job: Job, by: int | None) -> None:
        await self.failed(job, "cancelled")

    def _check_done(self) -> None:
        jobs = self.watcher.jobs.values()
        if len(jobs) >= self.watcher.expected and all(j.finished for j in jobs):
            self.watcher.all_done.set()


@dataclass(frozen=True)
class QueueRun:
    renders: int  # max_concurrent_renders
    jobs: int
    scenes: int  # per job
    image_latency: float
    makespan: float  # from the runner's start to the last job's delivery
    tail: float  # the last job's last image to its video: last clip, join, sound pass
    finished: tuple[float, ...]  # each job's end, from the runner's start, in job order
    requests: int  # image requests the fake saw
    overlaps: int  # requests that overlapped another with the same key (429s)

    @property
    def images(self) -> float:
        """Total image time: every image back to back through the one slot."""
        return self.jobs * self.scenes * self.image_latency

    @property
    def efficiency(self) -> float:
        return self.images / self.makespan

    @property
    def goal(self) -> float:
        return GOAL_SLACK * self.images + self.tail

    @property
    def in_job_order(self) -> bool:
        return list(self.finished) == sorted(self.finished)


def _bot_settings(together: PhotoTogether, speech_url: str, data_dir: Path,
                  renders: int) -> BotSettings:  # fmt: skip
    return BotSettings(
        images={"provider": "together", "base_url": together.base_url,
                "backoff_base": 0.05, "backoff_max": 0.5},
        tts={"provider": "openai", "base_url": speech_url},
        storage={"data_dir": str(data_dir)},
        queue={"max_concurrent_renders": renders, "max_total": 100, "per_user_limit": 100},
        rate_limit={"per_user": 100, "per_guild": 100, "images_per_day": 0,
                    "images_per_user_per_day": 0},
        secrets=BotSecrets.model_validate({"TOGETHER_API_KEY": BENCH_KEY}),
    )  # fmt: skip


def job_script(job: int, scenes: int, chars: tuple[int, int]) -> str:
    """A script of its own for each job (no image or narration shared with another job)."""
    text = make_script(scenes, chars=chars, seed=100 + job)
    return text.replace("benchmark picture", f"queue job {job} picture")


async def queue_run(
    renders: int,
    *,
    jobs: int,
    scenes: int,
    latencies: Latencies,
    chars: tuple[int, int],
    workdir: Path,
    aspect: str = "9:16",
) -> QueueRun:
    """`jobs` jobs of `scenes` scenes queued at once in the bot's job runner, at most
    `renders` running at once, against fresh fakes and an empty cache."""
    run_dir = workdir / f"queue-{renders}"
    shutil.rmtree(run_dir, ignore_errors=True)
    frame = Aspect.parse(aspect)
    watcher = _Watcher(jobs)
    async with (
        fake_services(latencies, sizes=[frame.image]) as (together, speech),
        httpx.AsyncClient() as client,
    ):
        settings = _bot_settings(together, speech.base_url, run_dir / "data", renders)
        store = await Store.open(run_dir / "bot.sqlite3")
        runner = JobRunner(store, settings, client, observer_for=watcher.observer_for)
        try:
            for job in range(1, jobs + 1):
                request = JobRequest(guild_id=1, channel_id=1, user_id=job,
                                     script=job_script(job, scenes, chars), filename="s.md",
                                     options=JobOptions(aspect=aspect))  # fmt: skip
                await runner.submit(request)
            started = time.monotonic()
            await runner.start()
            await asyncio.wait_for(watcher.all_done.wait(), timeout=60 * 60)
        finally:
            await runner.close()
            await store.close()
    if watcher.failures:
        raise RuntimeError("a queued job failed: " + "; ".join(watcher.failures))
    if together.overlaps:
        raise RuntimeError("image requests overlapped: the image slot was not respected")
    ordered = [watcher.jobs[j] for j in sorted(watcher.jobs)]
    last = max(ordered, key=lambda j: j.finished)
    shutil.rmtree(run_dir, ignore_errors=True)
    return QueueRun(
        renders=renders,
        jobs=jobs,
        scenes=scenes,
        image_latency=latencies.image,
        makespan=last.finished - started,
        tail=last.finished - last.last_image,
        finished=tuple(j.finished - started for j in ordered),
        requests=len(together.requests),
        overlaps=together.overlaps,
    )


@dataclass(frozen=True)
class KeysRun:
    keys: int
    scenes: int
    image_latency: float
    images_span: float  # first image started to last image done
    makespan: float
    per_key: tuple[int, ...]  # requests per key

    @property
    def images_alone(self) -> float:
        """The images back to back through one key's slot."""
        return self.scenes * self.image_latency


@contextmanager
def _second_key() -> Iterator[None]:
    """The second key's variable, in this process's environment while the run lasts."""
    before = os.environ.get(SECOND_KEY)
    os.environ[SECOND_KEY] = SECOND_SECRET
    try:
        yield
    finally:
        if before is None:
            del os.environ[SECOND_KEY]
        else:
            os.environ[SECOND_KEY] = before


async def keys_run(
    keys: int,
    *,
    scenes: int,
    latencies: Latencies,
    chars: tuple[int, int],
    workdir: Path,
    aspect: str = "9:16",
) -> KeysRun:
    """One render of `scenes` scenes with one or two keys, each its own account at the fake
    (one request at a time each)."""
    if keys not in (1, 2):
        raise ValueError("the keys benchmark runs with one key or two")
    run_dir = workdir / f"keys-{keys}"
    shutil.rmtree(run_dir, ignore_errors=True)
    frame = Aspect.parse(aspect)
    names = ["TOGETHER_API_KEY", SECOND_KEY][:keys]
    with _second_key():
        async with fake_services(latencies, sizes=[frame.image]) as (together, speech):
            together.expected_key = None
            together.keys = {BENCH_KEY: 200, SECOND_SECRET: 200}
            settings = Settings(
                images={"provider": "together", "base_url": together.base_url,
                        "backoff_base": 0.05, "backoff_max": 0.5, "keys": names},
                tts={"provider": "openai", "base_url": speech.base_url},
                storage={"data_dir": str(run_dir / "data")},
                secrets=Secrets.model_validate({"TOGETHER_API_KEY": BENCH_KEY}),
            )  # fmt: skip
            plan = plan_render(parse_script(job_script(0, scenes, chars)), settings,
                               aspect=frame)  # fmt: skip
            result = await render_plan(plan, settings, run_dir / "out.mp4")
    if together.overlaps:
        raise RuntimeError("image requests overlapped: a key's slot was not respected")
    shutil.rmtree(run_dir, ignore_errors=True)
    events = result.events
    starts = [e.t for e in events if isinstance(e, SceneEvent) and e.stage is Stage.IMAGE
              and e.status is Status.STARTED]  # fmt: skip
    dones = [e.t for e in events if isinstance(e, SceneEvent) and e.stage is Stage.IMAGE
             and e.status is Status.DONE]  # fmt: skip
    finished = [e.t for e in events if isinstance(e, JobDone)]
    if len(dones) != scenes or not finished:
        raise RuntimeError(f"expected {scenes} images made and the video, got {len(dones)}")
    per_key = tuple(
        sum(1 for r in together.requests if together.key_of(r) == secret)
        for secret in [BENCH_KEY, SECOND_SECRET][:keys]
    )
    return KeysRun(keys=keys, scenes=scenes, image_latency=latencies.image,
                   images_span=max(dones) - min(starts), makespan=finished[-1],
                   per_key=per_key)  # fmt: skip
