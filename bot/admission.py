"""Admission: the one way work enters the render queue, checked and recorded in one step.

    /render with a file ─┐
    the paste form ──────┼─► JobRunner.submit ───────► Admission.admit_render ──┐
    (a Retry button, /draft → Render: the same call)                            ├─► one store
    Regenerate, Edit prompt ─► JobRunner.revise_scene ─► Admission.admit_revision┤   transaction
    Retry (a failed job) ────► JobRunner.retry ────────► Admission.admit_retry ───┘

Each admission is one `BEGIN IMMEDIATE` transaction: it counts what the limits count, decides,
and (if let in) writes the job or the scene's new version *and* an `admissions` row, before
any other connection — another task, or another bot process on the same store file — can
count. A burst of taps therefore gets exactly the limit, never the limit plus the burst.

What is counted, all from the store (so it holds across restarts and processes):
- `[queue] max_total` and `per_user_limit`: jobs queued or running (a job waiting for review
  holds no render slot).
- `[rate_limit] per_user` and `per_guild`: render admissions within `window` seconds. A refused
  render writes nothing, so it does not count; a regeneration is not a render.
- `[rate_limit] images_per_day` and `images_per_user_per_day` (UTC days): paid image requests
  made today (`image_requests`, written by `bot/usage.py` as each request succeeds; an image
  found in the cache is free) plus the images still held by queued or running work (each
  admission reserves the images its scenes need that are not in the cache, until its run ends).

A review job queued again by its last approval is the same job: it is not admitted again, so
it is never counted or refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiosqlite

from .config import QueueConfig, RateLimitConfig
from .errors import AdmissionRefused, ImageBudgetSpent, QueueFull, RateLimited, UserLimitReached
from .store import (
    IN_QUEUE,
    Job,
    JobOptions,
    NewScene,
    SceneRecord,
    Store,
    StoredMedia,
    count,
    insert_job,
    requeue_failed_in,
    revise_scene_in,
)
from .text import duration_words, plural
from .usage import DAY, Clock, day_start, image_use

__all__ = ["Admission", "JobRequest"]


@dataclass(frozen=True)
class JobRequest:
    """A render someone asked for: the script, where to post it, and their options."""

    guild_id: int | None
    channel_id: int
    user_id: int
    script: str
    filename: str
    options: JobOptions


async def _recent_renders(
    db: aiosqlite.Connection, who: Literal["guild_id", "user_id"], value: int, since: float,
    limit: int,
) -> list[float]:  # fmt: skip
    """When the newest `limit` render admissions within the window were made, newest first."""
    async with db.execute(
        f"SELECT at FROM admissions WHERE kind = 'render' AND {who} = ? AND at > ?"
        " ORDER BY at DESC LIMIT ?",
        (value, since, limit),
    ) as cursor:
        return [float(row[0]) for row in await cursor.fetchall()]


def _tomorrow(now: float) -> str:
    return f"after midnight UTC (<t:{int(day_start(now) + DAY)}:t>)"


# ------------------------------------------------------------ admission


class Admission:
    """Checks and records admissions in the store (see the module's docstring)."""

    def __init__(
        self, store: Store, queue: QueueConfig, rates: RateLimitConfig, *, clock: Clock
    ) -> None:
        self.store = store
        self.queue = queue
        self.rates = rates
        self.clock = clock

    async def admit_render(
        self, request: JobRequest, *, title: str, scenes: Sequence[NewScene], images: int
    ) -> int:
        """Queue a new job if every limit allows it (`images`: the paid images its scenes
        need); its id. Raises an AdmissionRefused naming the limit otherwise."""
        job_id: int | None = None
        async with self.store.transaction() as db:
            now = self.clock()
            refusal = (
                await self._rate_refusal(db, request.user_id, request.guild_id, now)
                or await self._queue_refusal(db, request.user_id)
                or await self._render_budget_refusal(db, request, len(scenes), images, now)
            )
            if refusal is None:
                job_id = await insert_job(
                    db, guild_id=request.guild_id, channel_id=request.channel_id,
                    user_id=request.user_id, script=request.script, filename=request.filename,
                    options=request.options, title=title, scenes=scenes, now=now,
                )  # fmt: skip
                await _record(db, "render", job_id, request.guild_id, request.user_id, now,
                              scenes=len(scenes), images=images)  # fmt: skip
        if refusal is not None:  # raised after the commit: see Store.transaction
            raise refusal
        assert job_id is not None
        return job_id

    async def admit_revision(
        self,
        job: Job,
        number: int,
        version: int,
        *,
        seed: int,
        image_prompt: str,
        negative_prompt: str,
        images: int,
        media: StoredMedia | None = None,
    ) -> SceneRecord | None:
        """Make the next version of a scene (see `Store.revise_scene`) if the image budgets
        allow the `images` it needs; None if the scene or the job moved on. A revision is not
        a render: the queue limits and rate windows do not apply."""
        refusal: AdmissionRefused | None = None
        revised: SceneRecord | None = None
        async with self.store.transaction() as db:
            now = self.clock()
            refusal = await self._budget_refusal(
                db, job.guild_id, job.user_id, images, now,
                need=f"Making scene {number} again needs {_new_images(images)}",
            )  # fmt: skip
            if refusal is None:
                revised = await revise_scene_in(db, job.id, number, version, seed=seed,
                                                image_prompt=image_prompt,
                                                negative_prompt=negative_prompt,
                                                media=media)  # fmt: skip
                if revised is not None:
                    await _record(db, "revision", job.id, job.guild_id, job.user_id, now,
                                  scenes=1, images=images)  # fmt: skip
        if refusal is not None:
            raise refusal
        return revised

    async def admit_retry(self, job: Job, *, images: int) -> bool:
        """Queue a failed job again (Retry) if the queue limits and the image budgets allow
        the `images` it still needs; False if it is not failed any more. It is the same job,
        not a new render: the rate windows do not count it."""
        refusal: AdmissionRefused | None = None
        queued = False
        async with self.store.transaction() as db:
            now = self.clock()
            refusal = await self._queue_refusal(db, job.user_id) or await self._budget_refusal(
                db, job.guild_id, job.user_id, images, now,
                need=f"Trying job #{job.id} again needs {_new_images(images)}",
            )  # fmt: skip
            if refusal is None:
                queued = await requeue_failed_in(db, job.id)
                if queued:
                    await _record(db, "retry", job.id, job.guild_id, job.user_id, now,
                                  scenes=job.scene_count, images=images)  # fmt: skip
        if refusal is not None:
            raise refusal
        return queued

    async def peek(self, user_id: int, guild_id: int | None) -> None:
        """The rate windows only, read without recording anything: a courtesy before the
        paste form opens or a file is downloaded. `admit_render` is what counts."""
        async with self.store.transaction() as db:  # a consistent read, like the real one
            refusal = await self._rate_refusal(db, user_id, guild_id, self.clock())
        if refusal is not None:
            raise refusal

    async def settle(self, job_id: int, *, admitted_by: float) -> None:
        """A run of the job has ended: the admissions it covered (made before it started at
        `admitted_by`) hold no images any more; what it really requested is counted."""
        async with self.store.transaction() as db:
            await db.execute(
                "UPDATE admissions SET settled_at = ?"
                " WHERE job_id = ? AND settled_at IS NULL AND at <= ?",
                (self.clock(), job_id, admitted_by),
            )

    # ------------------------------------------------------------ the limits

    async def _rate_refusal(
        self, db: aiosqlite.Connection, user_id: int, guild_id: int | None, now: float
    ) -> RateLimited | None:
        rates = self.rates
        since = now - rates.window
        window = duration_words(rates.window)
        user = await _recent_renders(db, "user_id", user_id, since, rates.per_user)
        waits: list[tuple[float, str]] = []
        if len(user) >= rates.per_user:
            why = f"You have started {rates.per_user} renders in the last {window}"
            waits.append((user[-1] + rates.window - now, why))
        if guild_id is not None:
            guild = await _recent_renders(db, "guild_id", guild_id, since, rates.per_guild)
            if len(guild) >= rates.per_guild:
                why = f"This server has started {rates.per_guild} renders in the last {window}"
                waits.append((guild[-1] + rates.window - now, why))
        if not waits:
            return None
        wait, why = max(waits)
        when = int(now + wait) + 1
        return RateLimited(
            f"{why}, the limit. You can start another in about {duration_words(wait)} "
            f"(<t:{when}:t>).",
            wait,
        )

    async def _queue_refusal(
        self, db: aiosqlite.Connection, user_id: int
    ) -> AdmissionRefused | None:
        queue = self.queue
        everyone = await count(db, f"SELECT COUNT(*) FROM jobs WHERE state IN {IN_QUEUE}", ())
        if everyone >= queue.max_total:
            return QueueFull(
                f"the render queue is full ({queue.max_total} jobs); try again when one finishes"
            )
        mine = await count(
            db, f"SELECT COUNT(*) FROM jobs WHERE state IN {IN_QUEUE} AND user_id = ?", (user_id,)
        )
        if mine >= queue.per_user_limit:
            return UserLimitReached(
                f"you already have {queue.per_user_limit} renders queued or running "
                f"(the limit per person); wait for one to finish or cancel one with /cancel"
            )
        return None

    async def _render_budget_refusal(
        self, db: aiosqlite.Connection, request: JobRequest, scenes: int, images: int,
        now: float,
    ) -> ImageBudgetSpent | None:  # fmt: skip
        made = scenes - images
        need = f"This script's {plural(scenes, 'scene')} need {_new_images(images)}"
        if made:
            need += f" ({made:,} {'is' if made == 1 else 'are'} made already)"
        return await self._budget_refusal(db, request.guild_id, request.user_id, images, now,
                                          need=need, hint="try a shorter script, or ")  # fmt: skip

    async def _budget_refusal(
        self,
        db: aiosqlite.Connection,
        guild_id: int | None,
        user_id: int,
        images: int,
        now: float,
        *,
        need: str,
        hint: str = "",
    ) -> ImageBudgetSpent | None:
        if images <= 0:
            return None  # everything is in the cache: free, whatever the budget says
        rates = self.rates
        checks: list[tuple[int, Literal["guild_id", "user_id"], int, str]] = []
        if rates.images_per_day and guild_id is not None:
            checks.append((rates.images_per_day, "guild_id", guild_id, "this server has"))
        if rates.images_per_user_per_day:
            checks.append((rates.images_per_user_per_day, "user_id", user_id, "you have"))
        for budget, who, value, subject in checks:
            left = max(0, budget - (await image_use(db, who, value, now)).used)
            if images > left:
                whose = "its" if who == "guild_id" else "your"
                have = f"{left:,} of {whose} {budget:,} images left today"
                return ImageBudgetSpent(
                    f"{need}, but {subject} {have}; {hint}try again {_tomorrow(now)}",
                    day_start(now) + DAY - now,
                )
        return None


def _new_images(n: int) -> str:
    return "a new image" if n == 1 else f"{n:,} new images"


async def _record(
    db: aiosqlite.Connection,
    kind: Literal["render", "revision", "retry"],
    job_id: int,
    guild_id: int | None,
    user_id: int,
    now: float,
    *,
    scenes: int,
    images: int,
) -> None:
    await db.execute(
        "INSERT INTO admissions (kind, job_id, guild_id, user_id, at, scenes, images)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (kind, job_id, guild_id, user_id, now, scenes, images),
    )
