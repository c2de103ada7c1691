"""The image slot: which image requests run now, with which key, shared by every render of a
process, each slot held until its image's work has really ended.

Keys and slots. `[images] keys` names the environment variables that hold the image service's
keys (by default just `TOGETHER_API_KEY`); each key has `[images] max_concurrency` slots (one
request at a time per key, by default: Together counts concurrency per account). A request
takes a free slot of the key with the most free slots, so the renders' requests spread over
every key. Requests that wait are served in job order (`pipeline/job_order.py`): the earlier
job's requests first, whatever order they arrived in, so that renders running side by side
never make the earlier job finish later.

A key the service refuses (`KeyRefused`: 401, not a valid key; 402, no credit left) is taken
out for `KEY_REST` seconds, with a warning naming its variable (never the key), and the
request is sent again with another key. When the last key is refused, that request and every
request waiting fail with one message naming each variable and why it is out; the next request
(a later render) tries every key again, as a lone key always is.

Who holds which slot is behind a small interface, `KeyPool` (acquire in job order, take a key
out): `LocalKeys` keeps it in this process; `RedisKeys` (bot/remote/image_lease.py), the pool
shared by the workers of several hosts, implements the same two methods with leases in Redis.

Abandoned work. A paid image service such as Together.ai goes on generating after the client
hangs up, and counts that request against the account's concurrency until it is done: hanging
up saves nothing, and the next request would overlap it and be refused (429). So when the
render that asked for an image is cancelled (a user's cancel, a timeout, a shutdown, another
scene's failure), the attempt in flight is not interrupted: it finishes in the background,
still holding the slot, and a good image lands in the cache, where the next render finds it.
No new attempt starts: a provider waits between attempts with `wait_before_retry`, which stops
there; a request still waiting for a slot is dropped at once. The background work is bounded
by `[images] timeout`; past that it is cancelled.

`drain` is the graceful stop: it waits for the images in flight, at most `stop_grace` seconds
(`[images] timeout` or 30 s, whichever is shorter), then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .config import ImagesConfig, Settings
from .errors import ConfigError, ImageError, KeyRefused
from .job_order import Waiters, job_order
from .logs import mask_secrets

__all__ = [
    "KEY_REST",
    "STOP_GRACE_MAX",
    "ImageKey",
    "ImageSlot",
    "KeyPool",
    "LocalKeys",
    "check_each_attempt",
    "image_keys",
    "stop_grace",
    "wait_before_retry",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_GRACE_MAX = 30.0  # seconds a graceful stop waits, at most, for the images in flight
KEY_REST = 600.0  # seconds a refused key stays out before it is tried again


def stop_grace(config: ImagesConfig) -> float:
    """Seconds a graceful stop waits for the images in flight."""
    return min(config.timeout, STOP_GRACE_MAX)


@dataclass(frozen=True, eq=False)
class ImageKey:
    """One key of the image service, known by the environment variable it came from.
    `variable` None: no key (offline cards, or a provider built with its own key)."""

    variable: str | None
    secret: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return self.variable or "the image key"


NO_KEY = ImageKey(None)


def image_keys(settings: Settings, environ: Mapping[str, str] | None = None) -> list[ImageKey]:
    """The keys `[images] keys` names, read from the environment (ConfigError, naming the
    variable, for one that is not set or holds a character no key has). With the offline
    cards: no key, one pool of `max_concurrency` slots."""
    if settings.image_provider == "card":
        return [NO_KEY]
    environ = os.environ if environ is None else environ
    keys: list[ImageKey] = []
    for variable in settings.images.keys:
        if variable == "TOGETHER_API_KEY" and settings.secrets.together_api_key is not None:
            value = settings.secrets.together_api_key.get_secret_value()
        else:
            value = environ.get(variable, "").strip()
        if not value:
            raise ConfigError(
                f"[images] keys names {variable}, but {variable} is not set in the environment"
            )
        if any(not " " <= ch <= "~" for ch in value):
            raise ConfigError(f"{variable} contains a character that cannot be part of a key; "
                              "set it again, copied from the provider's page")  # fmt: skip
        keys.append(ImageKey(variable, value))
    mask_secrets((key.name, key.secret) for key in keys)  # never in a log line
    return keys


class KeyPool(Protocol):
    """Who may send an image request now, and with which key. `LocalKeys` keeps the slots in
    this process; an implementation shared by several hosts (leases in Redis) keeps the same
    promises: at most `[images] max_concurrency` holders per key, waiters served in job order,
    a key taken out is handed to nobody until it is back."""

    def acquire(self, order: int) -> AbstractAsyncContextManager[ImageKey]:
        """Wait for a free slot of a usable key, behind every waiter of an earlier job
        (smaller `order`); the context holds the slot and gives the key to send. Raises
        ImageError, naming every key and why it is out, when no key is left."""
        ...

    def take_out(self, key: ImageKey, refused: KeyRefused) -> None:
        """The service refused `key` (401, 402): hand it to nobody for a while; the waiters
        go to the other keys. When it was the last key, raise ImageError naming every key
        and why it is out, and fail every waiter with it (the next request tries them all
        again)."""
        ...


class LocalKeys:
    """The keys' slots, in this process."""

    def __init__(
        self,
        keys: Sequence[ImageKey],
        per_key: int,
        *,
        rest: float = KEY_REST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not keys:
            raise ValueError("LocalKeys needs at least one key")
        self.keys = list(keys)
        self.per_key = per_key
        self._rest = rest
        self._clock = clock
        self._busy = {key: 0 for key in self.keys}
        self._out: dict[ImageKey, tuple[float, str]] = {}  # key → (back at, why it is out)
        self._queue: Waiters[ImageKey] = Waiters()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._queue)

    def busy(self, key: ImageKey) -> int:
        return self._busy[key]

    @contextlib.asynccontextmanager
    async def acquire(self, order: int) -> AsyncIterator[ImageKey]:
        key = await self._take(order)
        try:
            yield key
        finally:
            self._give_back(key)

    def take_out(self, key: ImageKey, refused: KeyRefused) -> None:
        self._out[key] = (self._clock() + self._rest, str(refused))
        left = len(self._usable())
        if left:
            log.warning("%s; %s is taken out for %.0f minutes (%d key%s left)", refused,
                        key.name, self._rest / 60, left, "" if left == 1 else "s")  # fmt: skip
            self._serve()
            return
        # The last key: every request waiting fails, naming each key and why; the next
        # request (a later render) tries every key again, as a single key always was.
        error = self._none_left()
        self._queue.fail_all(error)
        self._out.clear()
        raise error

    async def _take(self, order: int) -> ImageKey:
        if not self._queue:
            key = self._free_key()
            if key is not None:
                self._busy[key] += 1
                return key
        self._check_left()
        future = self._queue.add(order)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._give_back(future.result())  # handed a slot as it was cancelled
            raise

    def _give_back(self, key: ImageKey) -> None:
        self._busy[key] -= 1
        self._serve()

    def _serve(self) -> None:
        """Hand free slots to the waiters, earliest job first."""
        while self._queue and (key := self._free_key()) is not None:
            waiter = self._queue.pop()
            if waiter is None:
                break
            self._busy[key] += 1
            waiter.set_result(key)

    def _usable(self) -> list[ImageKey]:
        now = self._clock()
        for key, (back, _) in list(self._out.items()):
            if now >= back:
                del self._out[key]
                log.info("%s is tried again", key.name)
        return [key for key in self.keys if key not in self._out]

    def _free_key(self) -> ImageKey | None:
        """The usable key with the most free slots (the first listed on a tie), if any."""
        free = [key for key in self._usable() if self._busy[key] < self.per_key]
        return min(free, key=lambda key: self._busy[key], default=None)

    def _check_left(self) -> None:
        if not self._usable():
            raise self._none_left()

    def _none_left(self) -> ImageError:
        reasons = [why for _, why in self._out.values()]
        if len(reasons) == 1:
            return ImageError(reasons[0])
        return ImageError("no image key can be used: " + "; ".join(reasons))


@dataclass
class _Work:
    """One image's work under the slot, as its own task sees it (through a context variable)."""

    abandoned: bool = False  # the render that asked for it is gone
    pausing: bool = False  # waiting between two attempts: safe to stop at once
    waiting: bool = True  # waiting for a slot: nothing sent yet, safe to stop at once


_current: contextvars.ContextVar[_Work | None] = contextvars.ContextVar(
    "reelbot_image_work", default=None
)


# Awaited before each further attempt of an image (after `wait_before_retry`): an image slot
# shared with other hosts checks there that it still holds its lease (bot/remote/image_lease.py).
_attempt_check: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = (
    contextvars.ContextVar("reelbot_attempt_check", default=None)
)


def check_each_attempt(check: Callable[[], Awaitable[None]] | None) -> None:
    """In an image's own task: await `check()` before each further attempt (None: no check;
    a `KeyPool` sets it while it gives a slot, and clears it when the slot is given back)."""
    _attempt_check.set(check)


async def wait_before_retry(seconds: float) -> None:
    """An image provider's wait between two attempts. Under an `ImageSlot` whose render is
    gone, there is no next attempt: this raises CancelledError instead of waiting."""
    await _wait_before_retry(seconds)
    check = _attempt_check.get()
    if check is not None:
        await check()


async def _wait_before_retry(seconds: float) -> None:
    work = _current.get()
    if work is None:
        await asyncio.sleep(seconds)
        return
    if work.abandoned:
        raise asyncio.CancelledError
    work.pausing = True
    try:
        await asyncio.sleep(seconds)
    finally:
        work.pausing = False


class ImageSlot:
    def __init__(self, keys: KeyPool, *, timeout: float) -> None:
        self.keys = keys
        self._timeout = timeout  # how long abandoned work may go on in the background
        self._tasks: set[asyncio.Task[Any]] = set()
        self._holding = 0

    @classmethod
    def for_config(cls, config: ImagesConfig, keys: Sequence[ImageKey] = (NO_KEY,)) -> ImageSlot:
        """`max_concurrency` slots for each of `keys` (by default one key: the provider's own),
        in this process."""
        return cls(LocalKeys(keys, config.max_concurrency), timeout=config.timeout)

    @classmethod
    def for_settings(cls, settings: Settings) -> ImageSlot:
        """The slots of the keys `[images] keys` names (ConfigError for one not set)."""
        return cls.for_config(settings.images, image_keys(settings))

    @property
    def in_flight(self) -> int:
        """Images being made now (those of cancelled renders included)."""
        return self._holding

    async def run(
        self,
        make: Callable[[ImageKey], Coroutine[Any, Any, T]],
        *,
        name: str,
        order: int | None = None,
    ) -> T:
        """Wait for a slot, in job order (`order`, else the render's own: `job_order()`), then
        run `make(key)` (one image: its request with that key, and its way into the cache) as a
        task of its own that holds the slot until it ends. A key refused by the service is
        taken out and `make` runs again with another. If the caller is cancelled meanwhile, a
        request still waiting is dropped, and one in flight finishes in the background."""
        place = job_order() if order is None else order
        work = _Work()

        async def in_slot() -> T:
            while True:
                if work.abandoned:  # the caller is gone: no new attempt
                    raise asyncio.CancelledError
                work.waiting = True
                async with self.keys.acquire(place) as key:
                    work.waiting = False
                    self._holding += 1
                    try:
                        return await make(key)
                    except KeyRefused as refused:
                        self.keys.take_out(key, refused)
                    finally:
                        self._holding -= 1

        context = contextvars.copy_context()
        context.run(_current.set, work)
        task = asyncio.create_task(in_slot(), name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._abandon(task, work)
            raise

    async def drain(self, timeout: float) -> int:
        """Wait at most `timeout` seconds for the images in flight to end (and land in the
        cache), then cancel the rest; returns how many had to be cancelled."""
        tasks = set(self._tasks)
        if not tasks:
            return 0
        log.info("waiting up to %.0f s for %d image(s) in flight", timeout, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("gave up waiting for %d image(s) in flight", len(pending))
            await asyncio.wait(pending)
        return len(pending)

    def _abandon(self, task: asyncio.Task[Any], work: _Work) -> None:
        work.abandoned = True
        if work.pausing or work.waiting:  # nothing is in flight
            task.cancel()
            return
        log.info("%s: its render is gone; the attempt in flight finishes in the background "
                 "(at most %.0f s)", task.get_name(), self._timeout)  # fmt: skip
        deadline = asyncio.get_running_loop().call_later(self._timeout, task.cancel)
        task.add_done_callback(lambda _: deadline.cancel())
        task.add_done_callback(_report_background_end)


def _report_background_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        log.info("%s: stopped in the background", task.get_name())
    elif (error := task.exception()) is not None:
        log.info("%s: failed in the background: %s", task.get_name(), error)
    else:
        log.info("%s: finished in the background; it is in the cache", task.get_name())
