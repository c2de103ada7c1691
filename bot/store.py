"""The bot's memory: jobs and their scenes in one SQLite file (aiosqlite).

The schema evolves through numbered files in `bot/migrations/` (`V1__jobs.sql`, `V2__…`),
applied in order and recorded, so a restart never guesses. Multi-row writes are transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
from pydantic import BaseModel, ConfigDict, Field

from pipeline.own_media import MediaKind, OwnMedia

from .errors import JobNotFound, StoreUnreadable

T = TypeVar("T")

__all__ = [
    "IN_QUEUE",
    "Job",
    "JobOptions",
    "JobState",
    "NewScene",
    "SceneRecord",
    "Store",
    "StoredMedia",
    "count",
    "requeue_failed_in",
    "states_sql",
]


class JobState(StrEnum):
    """queued → running → done | failed | cancelled. A `review` job renders its scenes
    (running → review), waits for every scene to be approved (review → queued), then is joined
    and delivered. Regenerating or editing a scene puts a reviewed, finished or failed job back
    in the queue (review | done | failed → queued)."""

    QUEUED = "queued"
    RUNNING = "running"
    REVIEW = "review"  # its scenes exist; waiting for them to be approved
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Not over yet: it can still be cancelled."""
        return self in (JobState.QUEUED, JobState.RUNNING, JobState.REVIEW)


def states_sql(*states: JobState) -> str:
    """Job states as an SQL list, `('queued', 'running')`: every state in a query is written
    from the enum, never typed by hand."""
    return "(" + ", ".join(f"'{state.value}'" for state in states) + ")"


# States whose job holds a render slot (and the images it reserved): what the limits count.
IN_QUEUE = states_sql(JobState.QUEUED, JobState.RUNNING)
# States from which a scene may get a new version (the job is not being rendered right now).
REVISABLE = states_sql(JobState.QUEUED, JobState.REVIEW, JobState.DONE, JobState.FAILED)
# ... and those a new version puts back in the queue (a queued job simply stays queued).
AGAIN = states_sql(JobState.REVIEW, JobState.DONE, JobState.FAILED)


class StoredMedia(BaseModel):
    """A scene's own picture or clip, checked once and kept in the artifact cache
    (`pipeline/own_media.py`): what a later run needs to use it without checking it again."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    path: str  # <data_dir>/cache/media/<sha256[:2]>/<sha256>.<ext>
    kind: MediaKind
    width: int
    height: int
    seconds: float | None = None
    sound: bool = False

    @classmethod
    def of(cls, media: OwnMedia) -> StoredMedia:
        return cls(path=str(media.path), kind=media.kind, width=media.width,
                   height=media.height, seconds=media.seconds, sound=media.sound)  # fmt: skip

    def own(self, name: str) -> OwnMedia:
        return OwnMedia(name, self.kind, Path(self.path), self.width, self.height, self.seconds,
                        self.sound)  # fmt: skip


class JobOptions(BaseModel):
    """What the requester chose with the command; kept as JSON with the job."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    aspect: str | None = None
    voice: str | None = None
    title: str | None = None
    # Scene review; None only before the presets are applied (`bot/presets.py`), which
    # leave it True or False.
    review: bool | None = None
    # Burned-in captions: None follows `[captions] enabled`.
    captions: bool | None = None
    # A music file attached to the command, saved in the artifact cache as
    # `<data_dir>/cache/music/<sha256[:2]>/<sha256>.<ext>`.
    music: str | None = None
    # The media uploaded with the render that its script names (`media: NAME`), by that name.
    media: dict[str, StoredMedia] = Field(default_factory=dict)
    # From the presets (`/settings`): words added to every image prompt, and a negative
    # prompt added to every scene's.
    style: str | None = None
    negative: str | None = None


@dataclass(frozen=True)
class Job:
    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    script: str
    filename: str
    options: JobOptions
    title: str
    scene_count: int
    state: JobState
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    output: str | None
    progress_message_id: int | None
    progress_posted_at: float | None
    thread_id: int | None
    events: str | None
    videos: int = 0  # videos delivered so far (a revised job delivers version 2, 3, ...)
    storyboard: str | None = None  # which images the storyboard in its thread shows (a digest)


@dataclass(frozen=True)
class SceneRecord:
    job_id: int
    number: int
    seed: int
    image_prompt: str
    negative_prompt: str
    audio: str | None
    image: str | None
    clip: str | None
    image_message_id: int | None
    approved: bool
    version: int
    posted_version: int | None = None  # the version its thread message shows
    delivered_version: int | None = None  # the version in the last delivered video
    # "Use my picture": the picture uploaded for this scene (StoredMedia as JSON), used instead
    # of what the script says; None: as the script says.
    media: str | None = None

    @property
    def own_media(self) -> StoredMedia | None:
        return StoredMedia.model_validate_json(self.media) if self.media else None


@dataclass(frozen=True)
class NewScene:
    number: int
    seed: int
    image_prompt: str
    negative_prompt: str


_JOB_COLUMNS = [f.name for f in fields(Job)]
_SCENE_COLUMNS = [f.name for f in fields(SceneRecord)]
_ARTIFACTS = {"audio", "image", "clip"}


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # One connection: transactions must not interleave (a second BEGIN would fail).
        self._write_lock = asyncio.Lock()
        # Writes that must land even if their caller is cancelled; close() waits for them.
        self._committing: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (or create) the store; StoreUnreadable names the file if it cannot be used."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnreadable(path, exc) from None
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db)
            await store._migrate()
        except BaseException as exc:
            # aiosqlite's thread keeps the process alive until the connection is closed (its
            # own error closing a broken file would hide the one that matters).
            with contextlib.suppress(Exception):
                await db.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreUnreadable(path, exc) from None
            raise
        return store

    def must_finish(self, write: Awaitable[T]) -> Awaitable[T]:
        """Run `write` to the end even if the awaiting task is cancelled (a job stopped by a
        shutdown still records its final state); `close()` waits for every such write."""
        future = asyncio.ensure_future(write)
        self._committing.add(future)
        future.add_done_callback(self._committing.discard)
        return asyncio.shield(future)

    async def close(self) -> None:
        if self._committing:
            await asyncio.wait(set(self._committing), timeout=10)
        await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ schema

    async def _migrate(self) -> None:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
        )
        async with self._db.execute("SELECT version FROM schema_migrations") as cursor:
            applied = {row[0] async for row in cursor}
        for version, sql in _migrations():
            if version in applied:
                continue
            await self._db.executescript(
                f"BEGIN;\n{sql}\nINSERT INTO schema_migrations VALUES ({version});\nCOMMIT;"
            )

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """One write transaction, `BEGIN IMMEDIATE`: it holds the database's write lock from
        its first statement, so what it reads is still true when it writes, even with another
        process on the same file. To refuse, return without writing (do not raise: a rollback
        would also undo other tasks' single statements on this connection)."""
        return self._transaction()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """Rows of one read (for the feature modules that keep their own queries)."""
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._begin()
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _begin(self, patience: float = 10.0) -> None:
        """BEGIN IMMEDIATE, waiting for another connection's write to end. SQLite waits
        itself (busy_timeout) unless this connection is still reading for another task (a
        cursor between execute and fetch): it then refuses at once, so try again shortly."""
        delay, deadline = 0.002, time.monotonic() + patience
        while True:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    # ------------------------------------------------------------ jobs

    async def create_job(
        self,
        *,
        guild_id: int | None,
        channel_id: int,
        user_id: int,
        script: str,
        filename: str,
        options: JobOptions,
        title: str,
        scenes: Sequence[NewScene],
    ) -> Job:
        async with self._transaction() as db:
            job_id = await insert_job(db, guild_id=guild_id, channel_id=channel_id,
                                      user_id=user_id, script=script, filename=filename,
                                      options=options, title=title, scenes=scenes,
                                      now=time.time())  # fmt: skip
        job = await self.get_job(job_id)
        assert job is not None
        return job

    async def get_job(self, job_id: int) -> Job | None:
        rows = await self._jobs("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    async def job(self, job_id: int) -> Job:
        """The job; JobNotFound if there is none (never made, or forgotten)."""
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def job_here(self, job_id: int, guild_id: int | None) -> Job:
        """The job a command or a button in `guild_id` names; JobNotFound also for another
        server's job (a server never sees another's)."""
        job = await self.get_job(job_id)
        if job is None or job.guild_id != guild_id:
            raise JobNotFound(job_id)
        return job

    async def jobs_in(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        return await self._jobs(f"WHERE state IN ({marks}) ORDER BY id", wanted)

    async def recent_jobs(self, limit: int = 20) -> list[Job]:
        return await self._jobs("ORDER BY id DESC LIMIT ?", (limit,))

    async def set_state(
        self, job_id: int, state: JobState, *, error: str | None = None, output: str | None = None
    ) -> None:
        now = time.time()
        params: list[float | str | None]
        if state is JobState.RUNNING:
            sql, params = "started_at = ?, finished_at = NULL, error = NULL", [now]
        elif state is JobState.QUEUED:
            sql, params = "started_at = NULL, finished_at = NULL", []
        else:
            sql = "finished_at = ?, error = COALESCE(?, error), output = COALESCE(?, output)"
            params = [now, error, output]
        await self._db.execute(
            f"UPDATE jobs SET state = ?, {sql} WHERE id = ?", (state.value, *params, job_id)
        )

    async def set_progress_message(self, job_id: int, message_id: int, posted_at: float) -> None:
        await self._db.execute(
            "UPDATE jobs SET progress_message_id = ?, progress_posted_at = ? WHERE id = ?",
            (message_id, posted_at, job_id),
        )

    async def set_thread(self, job_id: int, thread_id: int) -> None:
        await self._db.execute("UPDATE jobs SET thread_id = ? WHERE id = ?", (thread_id, job_id))

    async def set_storyboard(self, job_id: int, key: str) -> None:
        """The job's thread now holds a storyboard of the images `key` stands for."""
        await self._db.execute("UPDATE jobs SET storyboard = ? WHERE id = ?", (key, job_id))

    async def save_events(self, job_id: int, events_json: str) -> None:
        await self._db.execute("UPDATE jobs SET events = ? WHERE id = ?", (events_json, job_id))

    async def mark_delivered(self, job_id: int) -> None:
        """A video was made from the scenes as they are now."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE scenes SET delivered_version = version WHERE job_id = ?", (job_id,)
            )
            await db.execute("UPDATE jobs SET videos = videos + 1 WHERE id = ?", (job_id,))

    async def _jobs(self, where: str, params: Sequence[Any]) -> list[Job]:
        sql = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs {where}"
        async with self._db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [_job(row) for row in rows]

    # ------------------------------------------------------------ scenes

    async def scenes(self, job_id: int) -> list[SceneRecord]:
        return await self._scenes("WHERE job_id = ? ORDER BY number", (job_id,))

    async def scene(self, job_id: int, number: int) -> SceneRecord | None:
        rows = await self._scenes("WHERE job_id = ? AND number = ?", (job_id, number))
        return rows[0] if rows else None

    async def _scenes(self, where: str, params: Sequence[Any]) -> list[SceneRecord]:
        sql = f"SELECT {', '.join(_SCENE_COLUMNS)} FROM scenes {where}"
        async with self._db.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [_scene(row) for row in rows]

    async def record_artifact(self, job_id: int, number: int, kind: str, path: str) -> None:
        if kind not in _ARTIFACTS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        await self._db.execute(
            f"UPDATE scenes SET {kind} = ? WHERE job_id = ? AND number = ?",
            (path, job_id, number),
        )
        # Every version's files, for /forget (a scene's row holds only the latest).
        await self._db.execute(
            "INSERT OR IGNORE INTO job_files (job_id, path)"
            " SELECT ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)",
            (job_id, path, job_id),
        )

    async def set_scene_message(
        self, job_id: int, number: int, message_id: int, version: int
    ) -> None:
        """The scene's thread message `message_id` now shows `version`."""
        await self._db.execute(
            "UPDATE scenes SET image_message_id = ?, posted_version = ?"
            " WHERE job_id = ? AND number = ?",
            (message_id, version, job_id, number),
        )

    async def record_message(
        self, job_id: int, channel_id: int, message_id: int, kind: str
    ) -> None:
        """The bot posted `message_id` for the job (besides its progress and scene messages):
        an `image` (a replaced version, a storyboard), a `video` or a `notice`."""
        await self._db.execute(
            "INSERT OR IGNORE INTO job_messages (job_id, channel_id, message_id, kind)"
            " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)",
            (job_id, channel_id, message_id, kind, job_id),
        )

    # ------------------------------------------------------------ review
    #
    # Each of these is one conditional statement (or one transaction), so two clicks, or a
    # click and the runner, cannot both win: the state they check is the state they change.

    async def revise_scene(
        self,
        job_id: int,
        number: int,
        version: int,
        *,
        seed: int,
        image_prompt: str,
        negative_prompt: str,
        media: StoredMedia | None = None,
    ) -> SceneRecord | None:
        """Make the next version of a scene (unapproved) and put its job back in the queue.

        Only if `version` is the scene's version (a double click finds it moved on) — or, once
        the job has failed, the version its message still shows (the newer one was never
        made) — and the job is not being rendered right now (its plan is read once it is
        running). None if nothing changed."""
        async with self._transaction() as db:
            return await revise_scene_in(db, job_id, number, version, seed=seed,
                                         image_prompt=image_prompt,
                                         negative_prompt=negative_prompt,
                                         media=media)  # fmt: skip

    async def approve_scene(self, job_id: int, number: int, version: int) -> bool:
        """Approve `version` of a scene; False if it is not the scene's version any more, it
        was already approved, or the job was cancelled."""
        cursor = await self._db.execute(
            "UPDATE scenes SET approved = 1 WHERE job_id = ? AND number = ? AND version = ?"
            " AND approved = 0"
            " AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND state != ?)",
            (job_id, number, version, job_id, JobState.CANCELLED.value),
        )
        return cursor.rowcount == 1

    async def approve_all(self, job_id: int) -> list[int]:
        """Approve every scene of a job waiting for review; the numbers newly approved."""
        async with self._db.execute(
            "UPDATE scenes SET approved = 1 WHERE job_id = ? AND approved = 0"
            " AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND state = ?)"
            " RETURNING number",
            (job_id, job_id, JobState.REVIEW.value),
        ) as cursor:
            rows = await cursor.fetchall()
        return sorted(int(row[0]) for row in rows)

    async def queue_if_approved(self, job_id: int) -> bool:
        """review → queued once every scene is approved; True if this call moved it."""
        cursor = await self._db.execute(
            "UPDATE jobs SET state = ?, started_at = NULL, finished_at = NULL"
            " WHERE id = ? AND state = ?"
            " AND NOT EXISTS (SELECT 1 FROM scenes WHERE job_id = ? AND approved = 0)",
            (JobState.QUEUED.value, job_id, JobState.REVIEW.value, job_id),
        )
        return cursor.rowcount == 1

    async def end_review_round(self, job_id: int) -> JobState:
        """A review render made every scene: running → review, or straight back to queued
        (to be joined) if every scene was approved meanwhile."""
        await self._db.execute(
            "UPDATE jobs SET finished_at = ?, state = CASE"
            " WHEN EXISTS (SELECT 1 FROM scenes WHERE job_id = ? AND approved = 0)"
            " THEN ? ELSE ? END WHERE id = ? AND state = ?",
            (
                time.time(),
                job_id,
                JobState.REVIEW.value,
                JobState.QUEUED.value,
                job_id,
                JobState.RUNNING.value,
            ),
        )
        job = await self.get_job(job_id)
        return job.state if job is not None else JobState.CANCELLED


async def insert_job(
    db: aiosqlite.Connection,
    *,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    script: str,
    filename: str,
    options: JobOptions,
    title: str,
    scenes: Sequence[NewScene],
    now: float,
) -> int:
    """Insert a queued job and its scenes (inside the caller's transaction); its id."""
    cursor = await db.execute(
        "INSERT INTO jobs (guild_id, channel_id, user_id, script, filename, options,"
        " title, scene_count, state, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (guild_id, channel_id, user_id, script, filename, options.model_dump_json(),
         title, len(scenes), JobState.QUEUED.value, now),
    )  # fmt: skip
    job_id = cursor.lastrowid
    assert job_id is not None
    await db.executemany(
        "INSERT INTO scenes (job_id, number, seed, image_prompt, negative_prompt)"
        " VALUES (?,?,?,?,?)",
        [(job_id, s.number, s.seed, s.image_prompt, s.negative_prompt) for s in scenes],
    )
    return job_id


async def revise_scene_in(
    db: aiosqlite.Connection,
    job_id: int,
    number: int,
    version: int,
    *,
    seed: int,
    image_prompt: str,
    negative_prompt: str,
    media: StoredMedia | None = None,
) -> SceneRecord | None:
    """`Store.revise_scene`'s two statements, inside the caller's transaction. `media`: the
    scene's own uploaded picture from now on (None: what the script says)."""
    async with db.execute(
        "UPDATE scenes SET seed = ?, image_prompt = ?, negative_prompt = ?, media = ?,"
        " approved = 0, version = version + 1 WHERE job_id = ? AND number = ?"
        " AND (version = ? OR (posted_version = ?"
        "      AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND state = ?)))"
        f" AND EXISTS (SELECT 1 FROM jobs WHERE id = ? AND state IN {REVISABLE})"
        f" RETURNING {', '.join(_SCENE_COLUMNS)}",
        (seed, image_prompt, negative_prompt, media.model_dump_json() if media else None,
         job_id, number, version, version, job_id, JobState.FAILED.value, job_id),
    ) as cursor:  # fmt: skip
        row = await cursor.fetchone()
    if row is None:
        return None
    await db.execute(
        "UPDATE jobs SET state = ?, started_at = NULL, finished_at = NULL, error = NULL"
        f" WHERE id = ? AND state IN {AGAIN}",
        (JobState.QUEUED.value, job_id),
    )
    return _scene(row)


async def requeue_failed_in(db: aiosqlite.Connection, job_id: int) -> bool:
    """failed → queued (Retry), inside the caller's transaction; True if this call moved it."""
    cursor = await db.execute(
        "UPDATE jobs SET state = ?, started_at = NULL, finished_at = NULL, error = NULL"
        " WHERE id = ? AND state = ?",
        (JobState.QUEUED.value, job_id, JobState.FAILED.value),
    )
    return cursor.rowcount == 1


async def count(db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> int:
    """The one number a counting query answers (0 for none): for the modules that keep their
    own queries inside a transaction (`bot/admission.py`, `bot/usage.py`)."""
    async with db.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _scene(row: aiosqlite.Row) -> SceneRecord:
    return SceneRecord(**{**dict(row), "approved": bool(row["approved"])})


def _job(row: aiosqlite.Row) -> Job:
    data = dict(row)
    data["options"] = JobOptions.model_validate_json(data["options"])
    data["state"] = JobState(data["state"])
    return Job(**data)


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("bot.migrations").iterdir():
        name = entry.name
        if name.startswith("V") and name.endswith(".sql") and "__" in name:
            found.append((int(name[1 : name.index("__")]), entry.read_text(encoding="utf-8")))
    return sorted(found)
