"""How long the bot keeps people's data: `[storage] keep_days`, and `/forget job:<n>`.

What the bot keeps for a job, and where:

    <data_dir>/bot.sqlite3          the job row (script, options, title, progress events), its
                                    scenes (prompts, seeds, review versions and approvals), the
                                    ids of the messages it posted, the artefacts it used, and
                                    the usage record
    <data_dir>/outputs/             the video, until it is posted (kept if it could not be)
    <data_dir>/cache/music/         uploaded music, under its content's hash
    <data_dir>/cache/{audio,words,image,clip,captions}/   the artefacts, shared by every job
                                    with the same content; capped by `cache_max_mb`

`keep_days` after a job ended (done, failed, cancelled, or left waiting for review), `sweep()`
removes its rows, its kept video and its uploaded music (unless a newer job uses the same
file). The artefact cache is left to its own size cap. The usage record (who rendered how many
scenes and images, when: no script text) is kept as long, and never cut short within the month
that `/usage` shows or a rate window. The runner sweeps at start and then every hour.

`forget()` does the same for one job at once and also removes its artefacts from the cache
(unless another kept job uses the same file); the front end then deletes the images and
blanks the videos the bot posted for it.

Rows are deleted with SQLite's `secure_delete` on and the write-ahead log truncated after,
so the script text does not linger in free pages of the database file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import ArtifactCache

from .outputs import remove_outputs
from .store import IN_QUEUE, Job, JobState, SceneRecord, Store, states_sql
from .usage import DAY, Clock, month_start

__all__ = ["SWEEP_INTERVAL", "ForgetHook", "ForgottenJob", "PostedMessage", "Retention"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0  # seconds between two keep_days sweeps
# Artefacts made from a scene, and the files kept beside them under the same key.
_SIBLINGS = {"audio": (("words", ".json"),), "clip": (("captions", ".ass"),)}


@dataclass(frozen=True)
class PostedMessage:
    channel_id: int
    message_id: int
    kind: str  # 'progress', 'image' (a scene, a replaced version, a storyboard), 'video', 'notice'


@dataclass(frozen=True)
class ForgottenJob:
    job: Job  # as it was, for the front end's messages
    posts: tuple[PostedMessage, ...]  # what the bot posted for it (the progress message first)
    removed: tuple[Path, ...]  # files removed
    asked_by: int | None  # who used /forget; None: removed after keep_days
    keep_days: int


ForgetHook = Callable[[ForgottenJob], Awaitable[None]]


class Retention:
    def __init__(
        self,
        store: Store,
        *,
        data_dir: Path,
        keep_days: int,
        keep_usage: float,
        clock: Clock,
        on_forgotten: ForgetHook | None = None,
    ) -> None:
        self.store = store
        self.cache = ArtifactCache(data_dir / "cache")
        self.outputs = data_dir / "outputs"
        self.keep_days = keep_days
        self.keep_usage = keep_usage  # seconds of usage a limit looks back (the rate window)
        self.clock = clock
        self.on_forgotten = on_forgotten

    # ------------------------------------------------------------ one job

    async def forget(self, job_id: int, *, by: int | None) -> ForgottenJob | None:
        """Remove a job that is not queued or running: its rows, its files (and, asked by
        someone, its artefacts), then tell the front end. None if there is no such job, or it
        was queued again meanwhile."""
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        scenes = await self.store.scenes(job_id)
        posts = await self._posts(job, scenes)
        used = await self.store.fetch("SELECT path FROM job_files WHERE job_id = ?", (job_id,))
        await self.store.fetch("PRAGMA secure_delete = ON")
        async with self.store.transaction() as db:
            cursor = await db.execute(
                f"DELETE FROM jobs WHERE id = ? AND state NOT IN {IN_QUEUE}", (job_id,)
            )
            deleted = cursor.rowcount == 1
            if deleted:  # the usage stays (it holds no script text); nothing is reserved
                await db.execute(
                    "UPDATE admissions SET settled_at = ? WHERE job_id = ? AND settled_at IS NULL",
                    (self.clock(), job_id),
                )
        if not deleted:
            return None
        removed = remove_outputs(self.outputs, job_id)
        for path in filter(None, [job.output, job.options.music]):
            if await self._unused(path) and _unlink(Path(path)):
                removed.append(Path(path))
        if by is not None:
            artefacts = {p for s in scenes for p in (s.audio, s.image, s.clip) if p}
            artefacts |= {str(row[0]) for row in used}  # older versions too
            for path in sorted(artefacts):
                if await self._unused(path):
                    removed.extend(p for p in _with_siblings(Path(path)) if _unlink(p))
        await self._truncate_log()
        log.info("job %d forgotten (%s); removed %d files", job_id,
                 f"asked by {by}" if by else f"older than {self.keep_days} days",
                 len(removed))  # fmt: skip
        forgotten = ForgottenJob(job, posts, tuple(removed), by, self.keep_days)
        if self.on_forgotten is not None:
            try:
                await self.on_forgotten(forgotten)
            except Exception:
                log.exception("job %d: the front end could not show it was forgotten", job_id)
        return forgotten

    async def _posts(self, job: Job, scenes: Sequence[SceneRecord]) -> tuple[PostedMessage, ...]:
        posts: list[PostedMessage] = []
        if job.progress_message_id is not None:
            posts.append(PostedMessage(job.channel_id, job.progress_message_id, "progress"))
        scene_place = job.thread_id or job.channel_id
        for scene in scenes:
            if scene.image_message_id is not None:
                posts.append(PostedMessage(scene_place, scene.image_message_id, "image"))
        rows = await self.store.fetch(
            "SELECT channel_id, message_id, kind FROM job_messages WHERE job_id = ?"
            " ORDER BY message_id",
            (job.id,),
        )
        posts.extend(PostedMessage(int(r[0]), int(r[1]), str(r[2])) for r in rows)
        return tuple(posts)

    async def _unused(self, path: str) -> bool:
        """No job still kept uses this file (the cache is shared; music too), no preset names
        it (`bot/presets.py`), and no live pin holds it: a queued job's own picture, uploaded
        by someone else with the same bytes, has no scene row yet but is pinned."""
        if Path(path).resolve() in self.cache.pinned():
            return False
        rows = await self.store.fetch(
            "SELECT 1 FROM jobs WHERE output = ? OR json_extract(options, '$.music') = ?"
            " UNION ALL SELECT 1 FROM scenes WHERE audio = ? OR image = ? OR clip = ?"
            " UNION ALL SELECT 1 FROM job_files WHERE path = ?"
            " UNION ALL SELECT 1 FROM presets WHERE name = 'music' AND value = ? LIMIT 1",
            (path, path, path, path, path, path, path),
        )
        return not rows

    async def _truncate_log(self) -> None:
        """Write the deletions into the database file and empty the write-ahead log, which
        still holds the old pages (best effort: a reader elsewhere may hold it open)."""
        try:
            await self.store.fetch("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception as exc:
            log.warning("could not checkpoint the database after a deletion: %s", exc)

    # ------------------------------------------------------------ keep_days

    async def sweep(self) -> list[ForgottenJob]:
        """Remove what is older than keep_days (see the module's docstring)."""
        if self.keep_days <= 0:
            return []
        now = self.clock()
        cutoff = now - self.keep_days * DAY
        ended = states_sql(JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.REVIEW)
        rows = await self.store.fetch(
            f"SELECT id FROM jobs WHERE state IN {ended}"
            " AND COALESCE(finished_at, created_at) < ? ORDER BY id",
            (cutoff,),
        )
        forgotten = [f for row in rows if (f := await self.forget(int(row[0]), by=None))]
        await self._prune_usage(min(cutoff, month_start(now), now - self.keep_usage))
        removed = await self._remove_orphans(cutoff)
        if forgotten or removed:
            log.info("keep_days sweep: %d jobs and %d unused uploads older than %d days removed",
                     len(forgotten), removed, self.keep_days)  # fmt: skip
        return forgotten

    async def run(self, interval: float = SWEEP_INTERVAL) -> None:
        """Sweep now and then every `interval` seconds, until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("the keep_days sweep failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)

    async def _prune_usage(self, before: float) -> None:
        async with self.store.transaction() as db:
            await db.execute(
                "DELETE FROM admissions WHERE at < ? AND (settled_at IS NOT NULL"
                " OR job_id NOT IN (SELECT id FROM jobs))",
                (before,),
            )
            await db.execute("DELETE FROM image_requests WHERE at < ?", (before,))

    async def _remove_orphans(self, cutoff: float) -> int:
        """Uploaded music no job uses (a render refused after the upload, say), and videos of
        jobs no longer kept, once older than keep_days."""
        candidates = [*_files(self.cache.root / "music"), *_files(self.outputs)]
        count = 0
        for path in candidates:
            try:
                old = path.stat().st_mtime < cutoff
            except OSError:
                continue
            if old and await self._orphan(path) and _unlink(path):
                count += 1
        return count

    async def _orphan(self, path: Path) -> bool:
        if path.parent == self.outputs:
            number = path.name.removeprefix(".").removeprefix("job-").split(".")[0]
            if number.isdigit() and await self.store.get_job(int(number)) is not None:
                return False
        return await self._unused(str(path))


def _files(folder: Path) -> Sequence[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_file()]


def _with_siblings(path: Path) -> list[Path]:
    """An artefact and the files kept under the same key beside it (`cache/<kind>/<xx>/`)."""
    kind = path.parent.parent.name
    found = [path]
    for other, suffix in _SIBLINGS.get(kind, ()):
        found.append(path.parent.parent.parent / other / path.parent.name / f"{path.stem}{suffix}")
    return found


def _unlink(path: Path) -> bool:
    """Remove a file; True if it was there and is gone now."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
        return False
    return True
