"""What each server and person used, counted from the store: paid image requests and renders.

    image_requests   one row a paid image request, written by `ImageMeter` as it succeeds (an
                     image found in the cache is free and has no row)
    admissions       one row a render or a regeneration let into the queue (`bot/admission.py`
                     writes them), with the images it reserved until its run ends

Days and months are UTC. The daily image budgets count what `image_use` returns: the requests
made today plus the images still held by queued or running work. `/usage` shows
`usage_report`; `[storage] keep_days` prunes old rows (`bot/retention.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import aiosqlite

from pipeline.events import ProgressEvent, SceneEvent, Stage, Status

from .config import RateLimitConfig
from .store import IN_QUEUE, Job, Store, count

__all__ = [
    "DAY",
    "Clock",
    "ImageMeter",
    "ImageUse",
    "PersonUsage",
    "UsageReport",
    "day_start",
    "image_use",
    "month_start",
    "usage_report",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # wall-clock seconds (`time.time`; a test's own clock)
DAY = 86400.0


def day_start(now: float) -> float:
    """Midnight (UTC) at the start of `now`'s day."""
    return now - now % DAY


def month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


# ------------------------------------------------------------ the daily budgets


@dataclass(frozen=True)
class ImageUse:
    made: int  # paid image requests made today
    held: int  # images reserved by queued or running work, not requested yet

    @property
    def used(self) -> int:
        return self.made + self.held


async def image_use(
    db: aiosqlite.Connection, who: Literal["guild_id", "user_id"], value: int, now: float
) -> ImageUse:
    """A server's or a person's images today: requests made, and images held."""
    made = await count(
        db, f"SELECT COUNT(*) FROM image_requests WHERE {who} = ? AND at >= ?",
        (value, day_start(now)),
    )  # fmt: skip
    # Per job: what its open admissions reserved, less what it has requested since the first.
    held = await count(
        db,
        "SELECT COALESCE(SUM(MAX(0, o.images - (SELECT COUNT(*) FROM image_requests r"
        "   WHERE r.job_id = o.job_id AND r.at >= o.since))), 0)"
        " FROM (SELECT a.job_id, SUM(a.images) AS images, MIN(a.at) AS since"
        "   FROM admissions a JOIN jobs j ON j.id = a.job_id"
        f"  WHERE a.settled_at IS NULL AND j.state IN {IN_QUEUE} AND a.{who} = ?"
        "   GROUP BY a.job_id) o",
        (value,),
    )
    return ImageUse(made, held)


class ImageMeter:
    """Counts a run's paid image requests as they succeed (an image DONE event; a CACHED one
    is free), writing each to the store off the event callback, in order."""

    def __init__(self, store: Store, job: Job, *, clock: Clock = time.time) -> None:
        self.store = store
        self.job = job
        self.clock = clock
        self._pending: list[Awaitable[None]] = []

    def see(self, event: ProgressEvent) -> None:
        if (
            isinstance(event, SceneEvent)
            and event.stage is Stage.IMAGE
            and event.status is Status.DONE
            and event.scene > 0
        ):
            write = self._record(event.scene, self.clock())
            self._pending.append(self.store.must_finish(write))

    async def _record(self, scene: int, at: float) -> None:
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO image_requests (job_id, guild_id, user_id, scene, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.job.id, self.job.guild_id, self.job.user_id, scene, at),
            )

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for error in (r for r in results if isinstance(r, BaseException)):
                log.error("job %d: an image request was not counted: %s", self.job.id, error)


# ------------------------------------------------------------ /usage


@dataclass
class PersonUsage:
    user_id: int
    images_today: int = 0
    images_month: int = 0
    renders_today: int = 0
    renders_month: int = 0


@dataclass(frozen=True)
class UsageReport:
    now: float
    total: PersonUsage  # the whole server (user_id 0)
    people: list[PersonUsage]  # this month, most images first
    server_today: ImageUse  # what the server's daily budget counts now
    you_today: ImageUse  # what your daily budget counts now (across servers)
    limits: RateLimitConfig
    you: PersonUsage = field(default_factory=lambda: PersonUsage(0))


async def usage_report(
    store: Store, guild_id: int, user_id: int, limits: RateLimitConfig, now: float
) -> UsageReport:
    """A server's images and renders today and this month, by person."""
    today, month = day_start(now), month_start(now)
    people: dict[int, PersonUsage] = defaultdict(lambda: PersonUsage(0))
    images = await store.fetch(
        "SELECT user_id, SUM(at >= ?), COUNT(*) FROM image_requests"
        " WHERE guild_id = ? AND at >= ? GROUP BY user_id",
        (today, guild_id, month),
    )
    _tally(people, images, "images")
    renders = await store.fetch(
        "SELECT user_id, SUM(at >= ?), COUNT(*) FROM admissions"
        " WHERE kind = 'render' AND guild_id = ? AND at >= ? GROUP BY user_id",
        (today, guild_id, month),
    )
    _tally(people, renders, "renders")
    for who, person in people.items():
        person.user_id = who
    total = PersonUsage(
        0,
        sum(p.images_today for p in people.values()),
        sum(p.images_month for p in people.values()),
        sum(p.renders_today for p in people.values()),
        sum(p.renders_month for p in people.values()),
    )
    async with store.transaction() as db:  # one consistent read of both budgets
        server_today = await image_use(db, "guild_id", guild_id, now)
        you_today = await image_use(db, "user_id", user_id, now)
    ranked = sorted(people.values(), key=lambda p: (-p.images_month, -p.renders_month, p.user_id))
    return UsageReport(now, total, ranked, server_today, you_today, limits,
                       people.get(user_id, PersonUsage(user_id)))  # fmt: skip


def _tally(
    people: dict[int, PersonUsage], rows: Iterable[Any], what: Literal["images", "renders"]
) -> None:
    """(user, today, this month) rows into each person's `<what>_today` and `<what>_month`."""
    for who, on_day, in_month in rows:
        person = people[int(who)]
        setattr(person, f"{what}_today", int(on_day))
        setattr(person, f"{what}_month", int(in_month))
