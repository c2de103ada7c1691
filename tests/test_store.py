"""The SQLite store on a real file: migrations, and writes that outlive a cancelled caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.store import JobOptions, JobState, NewScene, Store


async def new_job(store: Store) -> int:
    job = await store.create_job(
        guild_id=1, channel_id=2, user_id=3, script="## 1\nHi.", filename="s.md",
        options=JobOptions(), title="T", scenes=[NewScene(1, 42, "a cat", "")],
    )  # fmt: skip
    return job.id


async def test_migrations_apply_once_and_record_their_versions(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    async with await Store.open(db) as store:
        job_id = await new_job(store)
    async with await Store.open(db) as store:  # a restart applies nothing twice
        job = await store.get_job(job_id)
        assert job is not None and job.state is JobState.QUEUED
        [scene] = await store.scenes(job_id)
        assert (scene.seed, scene.image_prompt, scene.version) == (42, "a cat", 1)


async def test_close_waits_for_writes_whose_caller_was_cancelled(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite3"
    store = await Store.open(db)
    job_id = await new_job(store)
    on_its_way, go_on = asyncio.Event(), asyncio.Event()

    async def final_state() -> None:
        on_its_way.set()
        await go_on.wait()  # the write is still on its way when the caller is cancelled
        await store.set_state(job_id, JobState.FAILED, error="recorded")

    async def caller_task() -> None:
        await store.must_finish(final_state())

    caller = asyncio.create_task(caller_task())
    await on_its_way.wait()
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    closing = asyncio.create_task(store.close())  # must wait for the write, not cut it off
    go_on.set()  # the write goes on only once the store is closing
    await closing

    async with await Store.open(db) as reopened:
        job = await reopened.get_job(job_id)
    assert job is not None and job.state is JobState.FAILED and job.error == "recorded"
