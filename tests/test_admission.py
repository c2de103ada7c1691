"""Admission under a burst: the real runner and a real SQLite store, many submissions at once.

Each case fires N submissions as concurrent tasks (`asyncio.gather`, never awaited one by
one): they all pass their synchronous part (parsing, planning) before any of them reaches the
store, so a check-then-insert with an await between would let the whole burst in. Exactly the
limit must be accepted — with one runner, and with two runners (two connections, as two bot
processes would have) sharing one store file. Time windows use an injected clock.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.admission import JobRequest
from bot.config import BotSettings
from bot.errors import (
    AdmissionRefused,
    ImageBudgetSpent,
    QueueFull,
    RateLimited,
    UserLimitReached,
)
from bot.jobs import JobRunner
from bot.store import Job, JobOptions, JobState
from bot.usage import DAY, day_start
from pipeline.errors import ScriptError
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.runner_harness import Clock, Recorder, request, runners, settings_with, wait_state


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTogether, FakeSpeech]]:
    async with FakeTogether(latency=0.02) as together, FakeSpeech() as speech:
        yield together, speech


@pytest.fixture
def settings_for(
    tmp_path: Path, fakes: tuple[FakeTogether, FakeSpeech], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., BotSettings]:
    monkeypatch.setenv("TOGETHER_API_KEY", "key")
    return functools.partial(settings_with, tmp_path / "data", *fakes)


@dataclass
class Burst:
    accepted: list[Job]
    refused: list[AdmissionRefused]


async def burst(targets: Sequence[JobRunner], requests: Sequence[JobRequest]) -> Burst:
    """Submit every request at once, spread over the runners; check that they really ran
    together (every task had started before the first one finished)."""
    started = 0
    started_when_first_done: list[int] = []

    async def one(runner: JobRunner, req: JobRequest) -> Job:
        nonlocal started
        started += 1
        try:
            return await runner.submit(req)
        finally:
            started_when_first_done.append(started)

    tasks = [one(targets[i % len(targets)], r) for i, r in enumerate(requests)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert started_when_first_done[0] == len(requests), "the submissions did not interleave"
    unexpected = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, AdmissionRefused)]  # fmt: skip
    assert not unexpected, unexpected
    return Burst([r for r in results if isinstance(r, Job)],
                 [r for r in results if isinstance(r, AdmissionRefused)])  # fmt: skip


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, params))


# ------------------------------------------------------------ the five bursts


@dataclass(frozen=True)
class Case:
    sections: dict[str, dict[str, Any]]
    requests: list[JobRequest]
    limit: int
    refusal: type[AdmissionRefused]
    words: str


CASES = {
    "one person over per_user_limit": Case(
        {"queue": {"per_user_limit": 3}},
        [request(f"mine {i}", user=7) for i in range(12)],
        3,
        UserLimitReached,
        "you already have 3 renders queued or running (the limit per person)",
    ),
    "many people over max_total": Case(
        {"queue": {"max_total": 5}},
        [request(f"crowd {i}", user=100 + i) for i in range(20)],
        5,
        QueueFull,
        "the render queue is full (5 jobs)",
    ),
    "one person over the hourly rate": Case(
        {"rate_limit": {"per_user": 4}},
        [request(f"tapper {i}", user=8) for i in range(12)],
        4,
        RateLimited,
        "You have started 4 renders in the last 60 minutes, the limit.",
    ),
    "one server over its hourly rate": Case(
        {"rate_limit": {"per_guild": 6}},
        [request(f"server {i}", user=200 + i) for i in range(20)],
        6,
        RateLimited,
        "This server has started 6 renders in the last 60 minutes, the limit.",
    ),
    "one server over its image budget": Case(
        {"rate_limit": {"images_per_day": 10}},
        [request(f"budget {i}", user=300 + i, scenes=3) for i in range(10)],
        3,  # three scenes, three images each: 3 × 3 = 9 of 10
        ImageBudgetSpent,
        "This script's 3 scenes need 3 new images, but this server has 1 of its 10 images "
        "left today; try a shorter script, or try again after midnight UTC",
    ),
}


@pytest.mark.parametrize("processes", [1, 2], ids=["one runner", "two runners, one file"])
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_burst_gets_exactly_the_limit(
    case: Case, processes: int, settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    db = tmp_path / "bot.sqlite3"
    async with runners(settings_for(**case.sections), db, Clock(), processes) as made:
        result = await burst(made, case.requests)
    assert len(result.accepted) == case.limit, [str(r) for r in result.refused]
    assert len(result.refused) == len(case.requests) - case.limit
    assert all(type(r) is case.refusal for r in result.refused), result.refused
    assert all(case.words in str(r) for r in result.refused), str(result.refused[0])
    # What the store holds agrees: one job and one admission per accepted submission.
    assert rows(db, "SELECT COUNT(*) FROM jobs") == [(case.limit,)]
    assert rows(db, "SELECT COUNT(*) FROM admissions WHERE kind = 'render'") == [(case.limit,)]
    assert sorted(j.id for j in result.accepted) == [
        r[0] for r in rows(db, "SELECT id FROM jobs ORDER BY id")
    ]


# ------------------------------------------------------------ rate windows over time


async def test_the_hourly_rate_survives_a_restart_and_frees_up_an_hour_later(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(rate_limit={"per_user": 2})
    db, clock = tmp_path / "bot.sqlite3", Clock()
    async with runners(settings, db, clock) as [runner]:
        await runner.submit(request("first", user=5))
        clock.now += 600
        await runner.submit(request("second", user=5))
    clock.now += 600
    async with runners(settings, db, clock) as [runner]:  # a new process, the same store
        with pytest.raises(RateLimited) as refused:
            await runner.submit(request("third", user=5))
        # The oldest of the two expires 40 minutes from now; the time is Discord's markup.
        assert refused.value.retry_after == pytest.approx(2400)
        assert "You can start another in about 40 minutes (<t:" in str(refused.value)
        assert str(int(clock.now + 2400) + 1) in str(refused.value)
        clock.now += 2400 + 1
        await runner.submit(request("third", user=5))
        with pytest.raises(RateLimited):
            await runner.admission.peek(5, 1)


async def test_a_refused_render_does_not_count(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(rate_limit={"per_user": 2}, queue={"per_user_limit": 1})
    db = tmp_path / "bot.sqlite3"
    async with runners(settings, db, Clock()) as [runner]:
        for _ in range(3):  # a typo, three times
            with pytest.raises(ScriptError):
                await runner.submit(JobRequest(1, 2, 9, "# T\n## 1\nimage: x\n", "s.md",
                                               JobOptions()))  # fmt: skip
        first = await runner.submit(request("ok", user=9))
        with pytest.raises(UserLimitReached):  # refused by the queue: not counted either
            await runner.submit(request("too soon", user=9))
        await runner.cancel(first.id)
        await runner.submit(request("again", user=9))  # the second render of the hour
        with pytest.raises(RateLimited, match="You have started 2 renders"):
            await runner.submit(request("third", user=9))
    assert rows(db, "SELECT COUNT(*) FROM admissions") == [(2,)]


async def test_the_same_script_again_is_a_new_admission(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(rate_limit={"per_user": 2})
    async with runners(settings, tmp_path / "bot.sqlite3", Clock()) as [runner]:
        await runner.submit(request("same", user=3))
        await runner.submit(request("same", user=3))  # a retry of the same job
        with pytest.raises(RateLimited):
            await runner.submit(request("same", user=3))


async def test_a_review_job_queued_by_its_last_approval_is_never_refused(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(queue={"max_total": 2, "per_user_limit": 2},
                            rate_limit={"per_user": 2})  # fmt: skip
    db = tmp_path / "bot.sqlite3"
    async with runners(settings, db, Clock()) as [runner]:
        reviewed = await runner.submit(request("reviewed", user=4, scenes=2, review=True))
        # Its review round is over (the runner's own store step, as after a render).
        await runner.store.set_state(reviewed.id, JobState.RUNNING)
        assert await runner.store.end_review_round(reviewed.id) is JobState.REVIEW
        await runner.submit(request("other", user=4))  # rate window and per-person limit full
        await runner.submit(request("someone else", user=6))  # the queue is full
        with pytest.raises(QueueFull):
            await runner.submit(request("one more", user=6))
        _, approval = await runner.approve_all(reviewed.id)
        assert approval.queued  # back in the queue over every limit: the same job
        job = await runner.store.get_job(reviewed.id)
        assert job is not None and job.state is JobState.QUEUED
    assert rows(db, "SELECT COUNT(*) FROM admissions WHERE job_id = ?", reviewed.id) == [(1,)]


# ------------------------------------------------------------ image budgets


async def test_a_persons_image_budget_holds_under_a_burst(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(rate_limit={"images_per_user_per_day": 4})
    db = tmp_path / "bot.sqlite3"
    async with runners(settings, db, Clock(), 2) as made:
        result = await burst(made, [request(f"mine {i}", user=11, scenes=2) for i in range(6)])
    assert len(result.accepted) == 2
    assert all("you have 0 of your 4 images left today" in str(r) for r in result.refused)


async def test_offline_cards_cost_nothing(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(images={"provider": "card"}, rate_limit={"images_per_day": 1})
    async with runners(settings, tmp_path / "bot.sqlite3", Clock()) as [runner]:
        result = await burst([runner], [request(f"card {i}", user=i, scenes=3) for i in range(4)])
    assert len(result.accepted) == 4


async def test_paid_images_are_counted_as_made_cached_ones_are_free_and_a_regeneration_over_budget_is_refused(  # noqa: E501
    settings_for: Callable[..., BotSettings],
    tmp_path: Path,
    fakes: tuple[FakeTogether, FakeSpeech],
) -> None:
    together, _ = fakes
    settings = settings_for(rate_limit={"images_per_day": 5})
    db, clock, recorder = tmp_path / "bot.sqlite3", Clock(), Recorder()
    async with runners(settings, db, clock, recorder=recorder) as [runner]:
        await runner.start()
        first = await runner.submit(request("paid", user=1, scenes=3))
        await wait_state(runner, first.id, JobState.DONE)
        assert len(together.requests) == 3
        made = rows(db, "SELECT job_id, scene FROM image_requests ORDER BY scene")
        assert made == [(first.id, 1), (first.id, 2), (first.id, 3)]
        assert rows(db, "SELECT settled_at IS NOT NULL FROM admissions") == [(1,)]

        again = await runner.submit(request("paid", user=2, scenes=3))  # all cached: free
        await wait_state(runner, again.id, JobState.DONE)
        assert len(together.requests) == 3 and len(rows(db, "SELECT * FROM image_requests")) == 3

        with pytest.raises(ImageBudgetSpent) as refused:  # 3 new images, 2 left
            await runner.submit(request("new", user=1, scenes=3))
        assert str(refused.value).startswith(
            "This script's 3 scenes need 3 new images, but this server has 2 of its 5 images "
            "left today; try a shorter script, or try again after midnight UTC (<t:"
        )
        assert refused.value.retry_after == pytest.approx(12 * 3600)

        for _ in range(2):  # two regenerations: the last two images of the day
            scene = await runner.store.scene(first.id, 1)
            assert scene is not None
            await runner.revise_scene(first.id, 1, scene.version, new_seed=True)
            runner.wake()
            await wait_state(runner, first.id, JobState.DONE, after_version=scene.version + 1)
        assert len(together.requests) == 5
        scene = await runner.store.scene(first.id, 2)
        assert scene is not None
        with pytest.raises(ImageBudgetSpent) as over:
            await runner.revise_scene(first.id, 2, scene.version, new_seed=True)
        words = str(over.value)
        assert words.startswith(
            "Making scene 2 again needs a new image, but this server has 0 of its 5 images "
            "left today; try again after midnight UTC (<t:"
        )
        assert "\n" not in words and f"<t:{int(day_start(clock.now) + DAY)}:t>" in words
        unchanged = await runner.store.scene(first.id, 2)
        assert unchanged == scene  # refused: nothing changed, the job stays done

        clock.now += 12 * 3600  # midnight UTC: a new day, a new budget
        await runner.revise_scene(first.id, 2, scene.version, new_seed=True)
    kinds = rows(db, "SELECT kind, images FROM admissions ORDER BY id")
    assert kinds == [("render", 3), ("render", 0), ("revision", 1), ("revision", 1),
                     ("revision", 1)]  # fmt: skip
