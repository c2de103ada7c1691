"""What the bot keeps of each run handed to the workers: table `remote_runs` (V7)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ..store import Store

__all__ = ["RemoteRun", "advance", "forget", "next_attempt", "run_of"]


@dataclass(frozen=True)
class RemoteRun:
    job_id: int
    run: str
    attempt: int
    last_event: str  # the id of the last stream message read


async def run_of(store: Store, job_id: int) -> RemoteRun:
    """The job's run in the queue: the one a restarted bot left, or a new one."""
    async with store.transaction() as db:
        await db.execute(
            "INSERT OR IGNORE INTO remote_runs (job_id, run) VALUES (?, ?)",
            (job_id, f"job{job_id}-{secrets.token_hex(6)}"),
        )
    [row] = await store.fetch(
        "SELECT job_id, run, attempt, last_event FROM remote_runs WHERE job_id = ?", (job_id,)
    )
    return RemoteRun(int(row[0]), str(row[1]), int(row[2]), str(row[3]))


async def advance(store: Store, job_id: int, last_event: str) -> None:
    async with store.transaction() as db:
        await db.execute(
            "UPDATE remote_runs SET last_event = ? WHERE job_id = ?", (last_event, job_id)
        )


async def next_attempt(store: Store, run: RemoteRun) -> RemoteRun:
    async with store.transaction() as db:
        await db.execute(
            "UPDATE remote_runs SET attempt = ? WHERE job_id = ?", (run.attempt + 1, run.job_id)
        )
    return RemoteRun(run.job_id, run.run, run.attempt + 1, run.last_event)


async def forget(store: Store, job_id: int) -> None:
    async with store.transaction() as db:
        await db.execute("DELETE FROM remote_runs WHERE job_id = ?", (job_id,))
