"""Job order: when several renders of one process wait for the same slots (the image keys'
slots, the encoder slots, Piper's CPU slot), the earlier job's work is served first, whatever
order it arrived in, so that running renders side by side never makes the earlier job finish
later.

A render takes its place with `in_job_order(order)` (`Renderer.render` does, with the order it
was given: the bot's job id; the CLI's single render is 0). Every task the render starts
inherits it (a context variable), so a slot needs no argument to know whose work is waiting:
`OrderedSlots` is an `asyncio.Semaphore` whose waiters are served by (job order, arrival).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
from collections.abc import Iterator
from typing import Generic, Literal, TypeVar

__all__ = ["OrderedSlots", "Waiters", "in_job_order", "job_order"]

T = TypeVar("T")

_order: contextvars.ContextVar[int] = contextvars.ContextVar("reelbot_job_order", default=0)


def job_order() -> int:
    """The place of the render this task works for (smaller goes first)."""
    return _order.get()


@contextlib.contextmanager
def in_job_order(order: int) -> Iterator[None]:
    """Run the body, and every task it starts, at place `order`."""
    token = _order.set(order)
    try:
        yield
    finally:
        _order.reset(token)


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
