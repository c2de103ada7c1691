"""The image slot: how many images are made at once, shared by every render of a process, and
held until each image's work has really ended.

A paid image service such as Together.ai goes on generating after the client hangs up, and
counts that request against the account's concurrency until it is done: hanging up saves
nothing, and the next request would overlap it and be refused (429). So when the render that
asked for an image is cancelled (a user's cancel, a timeout, a shutdown, another scene's
failure), the attempt in flight is not interrupted: it finishes in the background, still
holding the slot, and a good image lands in the cache, where the next render finds it. No new
attempt starts: a provider waits between attempts with `wait_before_retry`, which stops there.
The background work is bounded by `[images] timeout`; past that it is cancelled.

`drain` is the graceful stop: it waits for the images in flight, at most `stop_grace` seconds
(`[images] timeout` or 30 s, whichever is shorter), then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from .config import ImagesConfig

__all__ = ["STOP_GRACE_MAX", "ImageSlot", "check_each_attempt", "stop_grace", "wait_before_retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_GRACE_MAX = 30.0  # seconds a graceful stop waits, at most, for the images in flight


def stop_grace(config: ImagesConfig) -> float:
    """Seconds a graceful stop waits for the images in flight."""
    return min(config.timeout, STOP_GRACE_MAX)


@dataclass
class _Work:
    """One image's work under the slot, as its own task sees it (through a context variable)."""

    abandoned: bool = False  # the render that asked for it is gone
    pausing: bool = False  # waiting between two attempts: safe to stop at once


_current: contextvars.ContextVar[_Work | None] = contextvars.ContextVar(
    "reelbot_image_work", default=None
)


# Awaited before each further attempt of an image (after `wait_before_retry`): an image slot
# shared with other hosts checks there that it still holds its lease (bot/remote/image_lease.py).
_attempt_check: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = (
    contextvars.ContextVar("reelbot_attempt_check", default=None)
)


def check_each_attempt(check: Callable[[], Awaitable[None]]) -> None:
    """In an image's own task: await `check()` before each further attempt."""
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
    def __init__(self, concurrency: int, *, timeout: float) -> None:
        self._free = asyncio.Semaphore(concurrency)
        self._timeout = timeout  # how long abandoned work may go on in the background
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def for_config(cls, config: ImagesConfig) -> ImageSlot:
        return cls(config.max_concurrency, timeout=config.timeout)

    @property
    def in_flight(self) -> int:
        """Images being made now (those of cancelled renders included)."""
        return len(self._tasks)

    async def run(self, make: Callable[[], Coroutine[Any, Any, T]], *, name: str) -> T:
        """Wait for the slot, then run `make()` (one image: its request and its way into the
        cache) as a task of its own that holds the slot until it ends. If the caller is
        cancelled meanwhile, the task finishes the attempt in flight in the background."""
        await self._free.acquire()
        work = _Work()

        async def unless_abandoned() -> T:
            if work.abandoned:  # the caller was gone before this task ever ran
                raise asyncio.CancelledError
            return await make()

        context = contextvars.copy_context()
        context.run(_current.set, work)
        try:
            task = asyncio.create_task(unless_abandoned(), name=name, context=context)
        except BaseException:
            self._free.release()
            raise
        self._tasks.add(task)
        task.add_done_callback(self._ended)
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
        if work.pausing:  # between attempts: nothing is in flight
            task.cancel()
            return
        log.info("%s: its render is gone; the attempt in flight finishes in the background "
                 "(at most %.0f s)", task.get_name(), self._timeout)  # fmt: skip
        deadline = asyncio.get_running_loop().call_later(self._timeout, task.cancel)
        task.add_done_callback(lambda _: deadline.cancel())
        task.add_done_callback(_report_background_end)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._free.release()


def _report_background_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        log.info("%s: stopped in the background", task.get_name())
    elif (error := task.exception()) is not None:
        log.info("%s: failed in the background: %s", task.get_name(), error)
    else:
        log.info("%s: finished in the background; it is in the cache", task.get_name())
