"""[storage] keep_days and forgetting one job, in-process: real renders against the loopback
fakes, a real store file, and the files on disk checked after.

A job "ended 31 days ago" is a job whose `finished_at` says so: the test writes that into the
store file, as time would have; the sweep itself reads the runner's (injected) clock.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import BotSettings
from bot.jobs import JobRunner
from bot.store import JobState
from bot.uploads import save_music
from bot.usage import DAY
from pipeline.cache import ArtifactCache
from tests.fakes.audio import make_wav
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether
from tests.runner_harness import Clock, Recorder, request, runners, settings_with, wait_state

MARKER = "Zanzibar-7f3c"  # a word only the old job's script has


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


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql, params))


def age(db: Path, job_id: int, days: float) -> None:
    """The job ended `days` ago (as if that much time had passed since it finished)."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE id = ?",
                     (days * DAY, job_id))  # fmt: skip
    conn.close()


def cached_files(data_dir: Path) -> set[Path]:
    return {p for p in (data_dir / "cache").rglob("*") if p.is_file()}


def database_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())


async def test_keep_days_removes_old_jobs_scripts_and_files_and_keeps_the_cache(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(storage={"keep_days": 30})
    data, db = tmp_path / "data", tmp_path / "data" / "bot.sqlite3"
    cache = ArtifactCache(data / "cache")
    music, _ = save_music(make_wav(2.0), cache, ".wav")
    orphan_old, _ = save_music(make_wav(1.0), cache, ".wav")  # uploaded, then refused
    orphan_new, _ = save_music(make_wav(1.5), cache, ".wav")
    month_ago = time.time() - 40 * DAY
    os.utime(orphan_old, (month_ago, month_ago))
    recorder, clock = Recorder(), Clock(time.time())
    async with runners(settings, db, clock, recorder=recorder) as [runner]:
        await runner.start()
        old = await runner.submit(request(MARKER, user=1, scenes=2, music=str(music)))
        recorder.keep.add(old.id)  # its video "could not be posted": kept in outputs/
        await wait_state(runner, old.id, JobState.DONE)
        recent = await runner.submit(request("recent", user=2))
        await wait_state(runner, recent.id, JobState.DONE)
        kept = Path(str((await runner.store.get_job(old.id)).output))  # type: ignore[union-attr]
        assert kept.is_file() and MARKER.encode() in database_bytes(db)
        artefacts = cached_files(data)
        age(db, old.id, 31)
        age(db, recent.id, 29)

        forgotten = await runner.retention.sweep()

        assert [f.job.id for f in forgotten] == [old.id]
        assert recorder.forgotten == forgotten and forgotten[0].asked_by is None
        assert await runner.store.get_job(old.id) is None
        assert await runner.store.get_job(recent.id) is not None  # 29 days: still kept
        # The script text is gone from the database's files (the write-ahead log too) while
        # the bot runs, not just unlinked from its table.
        assert MARKER.encode() not in database_bytes(db)
    assert rows(db, "SELECT COUNT(*) FROM scenes WHERE job_id = ?", old.id) == [(0,)]
    assert rows(db, "SELECT COUNT(*) FROM job_messages WHERE job_id = ?", old.id) == [(0,)]
    assert not kept.exists() and not music.exists()  # the kept video, the uploaded music
    assert not orphan_old.exists() and orphan_new.exists()  # unused uploads, by age
    # The artefact cache keeps its own size cap: its images, speech and clips stay.
    assert cached_files(data) == artefacts - {music, orphan_old}
    # What was used stays counted (this month's /usage), without the script.
    assert rows(db, "SELECT COUNT(*) FROM admissions WHERE job_id = ?", old.id) == [(1,)]


async def test_usage_records_go_once_older_than_keep_days_and_last_month(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    settings = settings_for(storage={"keep_days": 7})
    db, clock = tmp_path / "data" / "bot.sqlite3", Clock()  # 16 June
    async with runners(settings, db, clock) as [runner]:
        job = await runner.submit(request("counted", user=1))
        await runner.cancel(job.id)
        clock.now += 8 * DAY  # older than keep_days, but still this month (/usage): kept
        await runner.retention.sweep()
        assert rows(db, "SELECT COUNT(*) FROM admissions") == [(1,)]
        clock.now += 8 * DAY  # 2 July: before this month too
        await runner.retention.sweep()
    assert rows(db, "SELECT COUNT(*) FROM admissions") == [(0,)]


async def test_keep_days_zero_keeps_everything(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    db = tmp_path / "data" / "bot.sqlite3"
    async with runners(settings_for(storage={"keep_days": 0}), db, Clock()) as [runner]:
        job = await runner.submit(request("forever", user=1))
        await runner.cancel(job.id)
        age(db, job.id, 3650)
        assert await runner.retention.sweep() == []
        assert await runner.store.get_job(job.id) is not None


async def test_an_active_job_is_never_swept(
    settings_for: Callable[..., BotSettings], tmp_path: Path
) -> None:
    db = tmp_path / "data" / "bot.sqlite3"
    async with runners(settings_for(), db, Clock(time.time() + 90 * DAY)) as [runner]:
        job = await runner.submit(request("waiting", user=1))  # queued, never started
        assert await runner.retention.sweep() == []
        assert (await runner.store.get_job(job.id)) is not None


async def test_forget_removes_one_job_and_its_artefacts_now(
    settings_for: Callable[..., BotSettings],
    tmp_path: Path,
    fakes: tuple[FakeTogether, FakeSpeech],
) -> None:
    data, db = tmp_path / "data", tmp_path / "data" / "bot.sqlite3"
    recorder = Recorder()
    async with runners(settings_for(), db, Clock(), recorder=recorder) as [runner]:
        await runner.start()
        mine = await runner.submit(request(MARKER, user=1, scenes=2))
        recorder.keep.add(mine.id)
        await wait_state(runner, mine.id, JobState.DONE)
        scenes = await runner.store.scenes(mine.id)
        # Someone else's job with the same first scene: that image is theirs too.
        other = await runner.submit(request(MARKER, user=2, scenes=1))
        await wait_state(runner, other.id, JobState.DONE)
        # Scene 1 regenerated: version 2 is this job's alone; version 1 stays the other's.
        await runner.revise_scene(mine.id, 1, 1, new_seed=True)
        runner.wake()
        await wait_state(runner, mine.id, JobState.DONE, after_version=2)
        regenerated = await runner.store.scene(mine.id, 1)
        assert regenerated is not None and regenerated.image != scenes[0].image
        kept = Path(str((await runner.store.get_job(mine.id)).output))  # type: ignore[union-attr]
        queued = await runner.submit(request("never started", user=1))
        await runner.close()  # stop the dispatcher: `queued` stays queued

        forgotten = await runner.forget(mine.id, by=1)
        cancelled_and_forgotten = await runner.forget(queued.id, by=1)

        assert forgotten.asked_by == 1 and recorder.forgotten[-2] == forgotten
        assert cancelled_and_forgotten.job.id == queued.id
        assert await runner.store.get_job(mine.id) is None
        assert await runner.store.get_job(queued.id) is None
    scene1, scene2 = scenes
    assert scene2.image and scene2.audio and scene2.clip
    assert regenerated.image and regenerated.clip
    only_mine = (scene2.image, scene2.audio, scene2.clip, regenerated.image, regenerated.clip)
    for path in (*only_mine, str(kept)):
        assert not Path(path).exists(), path  # only this job used them: gone
    for shared in (scene1.image, scene1.audio, scene1.clip):  # the other job's too: kept
        assert shared and Path(shared).is_file(), shared
    assert {Path(p) for p in (scene2.image, scene2.audio, scene2.clip)} <= set(forgotten.removed)
    assert f"The words of {MARKER}, 2.".encode() not in database_bytes(db)  # only its script
    assert not any(p.is_file() for p in data.glob(f"outputs/*job-{mine.id}*"))


async def test_forget_refuses_nothing_for_a_running_job_it_stops_it_first(
    settings_for: Callable[..., BotSettings],
    tmp_path: Path,
    fakes: tuple[FakeTogether, FakeSpeech],
) -> None:
    together, _ = fakes
    together.latency = 1.0  # the render is surely still running when it is forgotten
    db = tmp_path / "data" / "bot.sqlite3"
    recorder = Recorder()
    async with runners(settings_for(), db, Clock(), recorder=recorder) as [runner]:
        await runner.start()
        job = await runner.submit(request("slow", user=1, scenes=3))
        await wait_running(runner, job.id)
        forgotten = await runner.forget(job.id, by=99)
        assert recorder.outcomes[job.id] == "cancelled"
        assert forgotten.job.id == job.id and not runner.is_running(job.id)
        assert await runner.store.get_job(job.id) is None


async def wait_running(runner: JobRunner, job_id: int) -> None:
    async with asyncio.timeout(30):
        while not runner.is_running(job_id):
            await asyncio.sleep(0.02)


async def test_forget_keeps_a_file_another_job_has_pinned(
    settings_for: Callable[..., BotSettings],
    tmp_path: Path,
    fakes: tuple[FakeTogether, FakeSpeech],
) -> None:
    """The cache is shared by content: a file this job used that another job holds (its own
    media, pinned from upload until that job ends, before it has any scene row) is kept."""
    db = tmp_path / "data" / "bot.sqlite3"
    async with runners(settings_for(), db, Clock()) as [runner]:
        await runner.start()
        mine = await runner.submit(request(MARKER, user=1, scenes=2))
        await wait_state(runner, mine.id, JobState.DONE)
        first, second = await runner.store.scenes(mine.id)
        assert first.image and second.image
        runner.cache.pin("job-999", [Path(first.image)])  # another job, still queued
        forgotten = await runner.forget(mine.id, by=1)
    assert forgotten is not None
    assert Path(first.image).is_file()  # held by the other job
    assert not Path(second.image).exists()  # this job's alone: gone
    assert Path(first.image) not in forgotten.removed
