"""The image keys' slots shared by every worker: each slot a lease in Redis (a `KeyPool`, as
pipeline/image_slot.py defines it; `LocalKeys` is the one-process kind).

Each key of `[images] keys` has `[images] max_concurrency` slots, kept in Redis as
`reelbot:image-lease:<VARIABLE>:<n>`: named by the key's environment variable, never by the
key. A worker takes a free one (SET NX with a TTL of `[redis] lease_seconds`) before an
image's first request, renews it while the image's work runs, and frees it when that work ends
(its background end included, as `ImageSlot` keeps it). A request takes a slot of the usable
key with the fewest holders, so the requests of every worker spread over the keys.

Job order: within a worker, the requests waiting for a slot are served in job order (one
request at a time looks for a free slot in Redis, the earliest job's first). Between workers
there is no order: a free slot goes to whichever worker takes it first.

Fencing: each taking of a slot draws a number from `reelbot:image-lease:<VARIABLE>:fence`, and
the lease holds that number. Before every attempt (the first, and each retry, through
`check_each_attempt`) the worker renews the lease only if it still holds its number; a worker
whose lease lapsed (it stalled, or lost Redis for longer than the TTL) waits for a slot of the
same key again instead of starting a request that would overlap the new holder's.

A key the service refuses (401, 402) is taken out for every worker: the marker
`reelbot:image-key-out:<VARIABLE>` (holding the reason, which names the variable) lives for
`KEY_REST` seconds, and every worker skips that key meanwhile. When the last key is refused,
the markers are removed: the next request tries every key again, as with `LocalKeys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from pipeline.errors import ImageError, KeyRefused
from pipeline.image_slot import KEY_REST, ImageKey, check_each_attempt
from pipeline.job_order import Waiters

from .orders import lua

__all__ = ["ImageLeases", "RedisKeys"]

log = logging.getLogger(__name__)

# Renew the lease if its holder still holds it; free it likewise.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
POLL_MIN, POLL_MAX = 0.02, 0.25  # seconds between two looks for a free slot
OUT_PREFIX = "reelbot:image-key-out:"


def lease_name(key: ImageKey) -> str:
    """A key's name in Redis: its environment variable (the offline cards: "images")."""
    return key.variable or "images"


class Lease:
    """One slot, held with one fencing number."""

    def __init__(self, key: str, token: str) -> None:
        self.key = key
        self.token = token


class ImageLeases:
    """The `slots` leases of one image key."""

    def __init__(self, redis: ArqRedis, name: str, slots: int, ttl: float) -> None:
        self.redis = redis
        self.prefix = f"reelbot:image-lease:{name}"
        self.keys = [f"{self.prefix}:{n}" for n in range(slots)]
        self.ttl_ms = int(ttl * 1000)
        self.renew_every = ttl / 3

    async def holders(self) -> int:
        return int(await self.redis.exists(*self.keys))

    async def try_take(self, token: str | None = None) -> Lease | None:
        """Take a free slot now, if there is one (with a new fencing number, or `token`)."""
        if token is None:
            token = str(await self.redis.incr(f"{self.prefix}:fence"))
        for key in self.keys:
            if await self.redis.set(key, token, nx=True, px=self.ttl_ms):
                return Lease(key, token)
        return None

    async def acquire(self) -> Lease:
        """Wait for a free slot and take it."""
        token = str(await self.redis.incr(f"{self.prefix}:fence"))
        pause = POLL_MIN
        while (lease := await self.try_take(token)) is None:
            await asyncio.sleep(pause)
            pause = min(POLL_MAX, pause * 1.5)
        return lease

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease; False if it is not held with this number any more."""
        renewed = await lua(self.redis, _RENEW, [lease.key], [lease.token, self.ttl_ms])
        return bool(renewed)

    async def release(self, lease: Lease) -> None:
        with contextlib.suppress(OSError, RedisError):  # it lapses by itself
            await lua(self.redis, _RELEASE, [lease.key], [lease.token])


class _Held:
    """A lease held for one image's work: renewed in the background; `ensure` before each
    attempt (renewed now, or taken again if it was lost)."""

    def __init__(self, leases: ImageLeases, lease: Lease, name: str) -> None:
        self.leases = leases
        self.lease = lease
        self.name = name
        self._renewer = asyncio.create_task(self._renew(), name=f"{name}: lease")

    async def ensure(self) -> None:
        if await self.leases.renew(self.lease):
            return
        log.warning("%s: its image slot lease lapsed; waiting for a slot again", self.name)
        self.lease = await self.leases.acquire()

    async def release(self) -> None:
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        await self.leases.release(self.lease)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.leases.renew_every)
            try:
                await self.leases.renew(self.lease)  # a lost lease is found by `ensure`
            except (OSError, RedisError) as exc:
                log.warning("%s: cannot renew its image slot lease: %s", self.name, exc)


class RedisKeys:
    """The keys' slots as leases in Redis, shared by every worker (a `KeyPool`)."""

    def __init__(
        self,
        redis: ArqRedis,
        keys: Sequence[ImageKey],
        per_key: int,
        *,
        ttl: float,
        rest: float = KEY_REST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not keys:
            raise ValueError("RedisKeys needs at least one key")
        self.redis = redis
        self.keys = list(keys)
        self.leases = {key: ImageLeases(redis, lease_name(key), per_key, ttl) for key in keys}
        self.per_key = per_key
        self._rest = rest
        self._clock = clock
        self._out: dict[ImageKey, tuple[float, str]] = {}  # taken out here: (back at, why)
        self._out_shared: dict[ImageKey, str] = {}  # taken out by any worker, last seen
        self._queue: Waiters[None] = Waiters()
        self._looking = False  # a request of this worker is looking for a free slot
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @contextlib.asynccontextmanager
    async def acquire(self, order: int) -> AsyncIterator[ImageKey]:
        key, lease = await self._take(order)
        held = _Held(self.leases[key], lease, f"{lease_name(key)} slot")
        try:
            await held.ensure()  # fenced: the first attempt too
            check_each_attempt(held.ensure)
            yield key
        finally:
            check_each_attempt(None)
            await held.release()

    def take_out(self, key: ImageKey, refused: KeyRefused) -> None:
        why = str(refused)
        self._out[key] = (self._clock() + self._rest, why)
        self._out_shared[key] = why
        left = len(self._usable())
        if left:
            log.warning("%s; %s is taken out for %.0f minutes (%d key%s left)", refused,
                        key.name, self._rest / 60, left, "" if left == 1 else "s")  # fmt: skip
            self._in_background(self._mark_out(key, why))
            return
        error = self._none_left()
        self._queue.fail_all(error)
        self._out.clear()
        self._out_shared.clear()
        self._in_background(self._clear_out())
        raise error

    # ------------------------------------------------------------ inside

    async def _take(self, order: int) -> tuple[ImageKey, Lease]:
        """In job order within this worker: one request at a time looks for a free slot, and
        gives its turn to a request of an earlier job that arrives meanwhile."""
        while True:
            if self._looking:
                future = self._queue.add(order)
                try:
                    await future
                except asyncio.CancelledError:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._pass_turn()  # handed the turn as it was cancelled
                    raise
            else:
                self._looking = True
            try:
                taken = await self._look(order)
            finally:
                self._pass_turn()
            if taken is not None:
                return taken

    def _pass_turn(self) -> None:
        waiter = self._queue.pop()
        if waiter is None:
            self._looking = False
        else:
            waiter.set_result(None)

    async def _look(self, order: int) -> tuple[ImageKey, Lease] | None:
        """A free slot, taken; None when a request of an earlier job waits for the turn."""
        pause = POLL_MIN
        while True:
            earliest = self._queue.earliest()
            if earliest is not None and earliest < order:
                return None
            await self._refresh_out()
            usable = self._usable()
            if not usable:
                raise self._none_left()
            holders = {key: await self.leases[key].holders() for key in usable}
            for key in sorted(usable, key=lambda k: holders[k]):  # stable: first listed on a tie
                if holders[key] < self.per_key:
                    lease = await self.leases[key].try_take()
                    if lease is not None:
                        return key, lease
            await asyncio.sleep(pause)
            pause = min(POLL_MAX, pause * 1.5)

    async def _refresh_out(self) -> None:
        names = [OUT_PREFIX + lease_name(key) for key in self.keys]
        values = await self.redis.mget(names)
        self._out_shared = {
            key: value.decode() if isinstance(value, bytes) else str(value)
            for key, value in zip(self.keys, values, strict=True)
            if value is not None
        }

    def _usable(self) -> list[ImageKey]:
        now = self._clock()
        for key, (back, _) in list(self._out.items()):
            if now >= back:
                del self._out[key]
                log.info("%s is tried again", key.name)
        return [k for k in self.keys if k not in self._out and k not in self._out_shared]

    def _none_left(self) -> ImageError:
        reasons = {key: why for key, why in self._out_shared.items()}
        reasons.update({key: why for key, (_, why) in self._out.items()})
        if len(reasons) == 1:
            return ImageError(next(iter(reasons.values())))
        return ImageError("no image key can be used: " + "; ".join(reasons.values()))

    async def _mark_out(self, key: ImageKey, why: str) -> None:
        await self.redis.set(OUT_PREFIX + lease_name(key), why, px=int(self._rest * 1000))

    async def _clear_out(self) -> None:
        await self.redis.delete(*(OUT_PREFIX + lease_name(key) for key in self.keys))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        async def quietly() -> None:
            with contextlib.suppress(OSError, RedisError):
                await work

        task = asyncio.get_running_loop().create_task(quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
