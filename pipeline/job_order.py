"""Job order: when several renders of one process wait for the same slots (the image keys'
slots, the encoder slots, Piper's CPU slot), the earlier job's work is served first, whatever
order it arrived in, so that running renders side by side never makes the earlier job finish
later.

A render takes its place with `in_job_order(order)` (`Renderer.render` does, with the order it
was given: the bot's job id; the CLI's single render is 0). Every task the render starts
inherits it (a context variable), so a slot needs no argument to know whose work is waiting:
`OrderedSlots` is an `asyncio.Semaphore` whose waiters are served by (job order, arrival).

Slots order who starts first; once started, programs share the CPU. So every program a
render starts (speech, clips, join, sound pass) runs below this process (`niceness()`, applied
by `pipeline/proc.py`): the event loop, which checks each picture and hands the image slot on,
is never kept waiting by an encode (the image slot is the bottleneck, and its turnover is CPU
work here). And a later render's programs run lower still: the earliest render under way gets
the cores when both want them, and the later one uses what is left, as a queue would but
without idling the image slot.

Niceness weighs threads against others of the same scheduling group: with autogroups (the
default on Debian) or a service's cgroup, that is this process and its programs, so lowering
them takes no CPU from reelbot in favour of the rest of the machine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import heapq
import itertools
from collections.abc import Iterator
from typing import Generic, Literal, TypeVar

__all__ = [
    "LATER_JOB_NICENESS",
    "PROGRAM_NICENESS",
    "OrderedSlots",
    "Waiters",
    "in_job_order",
    "job_order",
    "niceness",
]

T = TypeVar("T")

_order: contextvars.ContextVar[int] = contextvars.ContextVar("reelbot_job_order", default=0)
# The renders under way in this process, by job order, counted (one job may be in two bodies at
# once, e.g. its join while a Regenerate re-makes a scene).
_running: collections.Counter[int] = collections.Counter()

# `nice` steps below this process for every program it starts: Linux gives a thread about 3x
# the CPU of one 5 steps lower when both want it ...
PROGRAM_NICENESS = 5
# ... and a later render's programs this many steps lower still (about 9x for 10 steps).
LATER_JOB_NICENESS = 10


def job_order() -> int:
    """The place of the render this task works for (smaller goes first)."""
    return _order.get()


@contextlib.contextmanager
def in_job_order(order: int) -> Iterator[None]:
    """Run the body, and every task it starts, at place `order`."""
    token = _order.set(order)
    _running[order] += 1
    try:
        yield
    finally:
        _running[order] -= 1
        if _running[order] <= 0:
            del _running[order]
        _order.reset(token)


def niceness() -> int:
    """How many `nice` steps below this process a program started now should run:
    `PROGRAM_NICENESS` for the earliest render under way and for work outside any render,
    `LATER_JOB_NICENESS` more for a later render's."""
    order = _order.get()
    later = bool(_running) and order > min(_running)
    return PROGRAM_NICENESS + (LATER_JOB_NICENESS if later else 0)


class Waiters(Generic[T]):
    """Futures waiting for a slot, served by (job order, arrival): the earliest job's oldest
    request first. A cancelled waiter is skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[T]]] = []
        self._arrival = itertools.count()

    def add(self, order: int) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (order, next(self._arrival), future))
        return future

    def pop(self) -> asyncio.Future[T] | None:
        """The next waiter still waiting, taken out of the queue; None if there is none."""
        while self._heap:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                return future
        return None

    def earliest(self) -> int | None:
        """The job order of the next waiter still waiting; None if there is none."""
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def fail_all(self, error: BaseException) -> None:
        while (future := self.pop()) is not None:
            future.set_exception(error)

    def __len__(self) -> int:
        return sum(1 for _, _, future in self._heap if not future.done())

    def __bool__(self) -> bool:
        return any(not future.done() for _, _, future in self._heap)


class OrderedSlots(asyncio.Semaphore):
    """A semaphore whose waiters are served in job order (then in arrival order), not in
    arrival order alone. It is an `asyncio.Semaphore` for everything that takes one
    (`async with`, `acquire`/`release`); its own bookkeeping replaces the base class's."""

    def __init__(self, value: int = 1) -> None:
        if value < 1:
            raise ValueError("OrderedSlots needs at least one slot")
        super().__init__(value)
        self._free = value
        self._queue: Waiters[None] = Waiters()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def locked(self) -> bool:
        return self._free == 0 or bool(self._queue)

    async def acquire(self) -> Literal[True]:
        if self._free > 0 and not self._queue:
            self._free -= 1
            return True
        future = self._queue.add(job_order())
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed the slot as it was cancelled
                self.release()
            raise
        return True

    def release(self) -> None:
        future = self._queue.pop()
        if future is None:
            self._free += 1
        else:  # handed straight over: nobody arriving meanwhile can take it first
            future.set_result(None)
