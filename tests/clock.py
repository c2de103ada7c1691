"""A clock a test moves by hand: its time stands still until `advance` moves it, and its
`sleep` waits for the test's time, never the real one. For code that takes a clock and a way
to wait (`EditCoalescer(clock=, sleep=)`)."""

from __future__ import annotations

import asyncio
import heapq
import itertools

# Loop turns that let the tasks a wake-up released run on to their next wait (each turn runs
# every callback that is ready). Turns, not time: nothing here waits on the real clock.
SETTLE_TURNS = 10


class ManualClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move the time on by `seconds`, waking each sleeper at its own moment, in order, and
        letting it run to its next wait before the time moves further."""
        end = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = end

    async def until_done(self, task: asyncio.Task[None], *, step: float, at_most: float) -> None:
        """Move the time on, `step` at a time, until `task` is done (an AssertionError if it is
        not done after `at_most` of this clock's seconds)."""
        deadline = self.now + at_most
        while not task.done():
            assert self.now < deadline, f"{task.get_name()} still running at {self.now}"
            await self.advance(step)
        await task


async def settle() -> None:
    for _ in range(SETTLE_TURNS):
        await asyncio.sleep(0)
