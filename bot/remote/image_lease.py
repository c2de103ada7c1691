"""The image slot shared by every worker: each slot a lease in Redis.

A paid image API allows so many requests at once per key (`[images] max_concurrency`); with
workers on several hosts, the slots live in Redis, as keys `reelbot:image-lease:<name>:<n>`.
A worker takes a free one (SET NX with a TTL of `[redis] lease_seconds`) before an image's
first request, renews it while the image's work runs, and frees it when that work ends (its
background end included, as `ImageSlot` keeps it: pipeline/image_slot.py).

Fencing: each taking of a slot draws a number from `reelbot:image-lease:<name>:fence`, and the
lease holds that number. Before every attempt (the first, and each retry, through
`check_each_attempt`) the worker renews the lease only if it still holds its number; a worker
whose lease lapsed (it stalled, or lost Redis for longer than the TTL) waits for a slot again
instead of starting a request that would overlap the new holder's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from pipeline.config import ImagesConfig
from pipeline.image_slot import ImageSlot, check_each_attempt

from .orders import lua

__all__ = ["ImageLeases", "RedisImageSlot"]

log = logging.getLogger(__name__)
T = TypeVar("T")

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
LOCAL_SLOTS = 1 << 16  # this process's own limit: none, the leases are the limit


class Lease:
    """One slot, held with one fencing number."""

    def __init__(self, key: str, token: str) -> None:
        self.key = key
        self.token = token


class ImageLeases:
    def __init__(self, redis: ArqRedis, name: str, slots: int, ttl: float) -> None:
        self.redis = redis
        self.prefix = f"reelbot:image-lease:{name}"
        self.keys = [f"{self.prefix}:{n}" for n in range(slots)]
        self.ttl_ms = int(ttl * 1000)
        self.renew_every = ttl / 3

    async def acquire(self) -> Lease:
        """Wait for a free slot and take it."""
        token = str(await self.redis.incr(f"{self.prefix}:fence"))
        pause = POLL_MIN
        while True:
            for key in self.keys:
                if await self.redis.set(key, token, nx=True, px=self.ttl_ms):
                    return Lease(key, token)
            await asyncio.sleep(pause)
            pause = min(POLL_MAX, pause * 1.5)

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


class RedisImageSlot(ImageSlot):
    """`ImageSlot` (its background end, `drain`, `in_flight`) with its slots in Redis."""

    def __init__(self, redis: ArqRedis, config: ImagesConfig, *, ttl: float,
                 name: str = "images") -> None:  # fmt: skip
        super().__init__(LOCAL_SLOTS, timeout=config.timeout)
        self.leases = ImageLeases(redis, name, config.max_concurrency, ttl)

    async def run(self, make: Callable[[], Coroutine[Any, Any, T]], *, name: str) -> T:
        lease = await self.leases.acquire()  # cancelled here: nothing was asked for
        started = False

        async def leased() -> T:
            nonlocal started
            started = True
            held = _Held(self.leases, lease, name)
            try:
                await held.ensure()
                check_each_attempt(held.ensure)
                return await make()
            finally:
                await held.release()

        try:
            return await super().run(leased, name=name)
        finally:
            if not started:  # its task never ran (and never will): the lease is ours to free
                await self.leases.release(lease)
