"""The progress message in Discord: one message a job, edited at a calm pace, found again
after a restart. What it shows is drawn elsewhere (`bot/progress_embed.py`), and its buttons
are handed in (`bot/controls.py`): this module only sends and edits.

    ProgressView ──show()──► EditCoalescer: at most one draw per `edit_interval`, the latest
                             view wins, the final view is always drawn
                                    │
                                    ▼
              ProgressMessage: edit the message; if Discord will not edit it any more
              (older than `message_max_age`, at the edit limit of messages older than an hour:
              error 30046, or deleted) post a new one and record it in the store, so a
              restart continues the right message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import aiohttp
import discord

from .config import DiscordConfig
from .controls import with_buttons
from .progress_embed import ProgressView, build_embed
from .store import Job, Store

__all__ = ["EDIT_LIMIT_REACHED", "UNKNOWN_MESSAGE", "Buttons", "EditCoalescer", "ProgressMessage"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Codes after which a message cannot be edited any more: post a new one.
# 30046: "Maximum number of edits to messages older than 1 hour reached": a message older than
# an hour may be edited only so often.
EDIT_LIMIT_REACHED = 30046
UNKNOWN_MESSAGE = 10008

# The buttons a view of the progress message carries (None: none; an edit with none removes
# them). `Controls.progress_view` (bot/controls.py) is the one the bot hands in.
Buttons = Callable[[ProgressView], discord.ui.View | None]


# ------------------------------------------------------------ pacing


class EditCoalescer(Generic[T]):
    """Draws states at most once per `interval` seconds: the latest state wins, states in
    between are skipped, and `close(final)` always draws the final one.

    A failed draw is logged and does not stop later ones. Discord's 429s never reach here:
    discord.py waits and retries them itself.
    """

    def __init__(
        self,
        draw: Callable[[T], Awaitable[None]],
        *,
        interval: float,
        name: str = "coalescer",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._draw = draw
        self.interval = interval
        self.name = name
        self._clock = clock  # monotonic seconds, and a way to wait for them: a test's own
        self._sleep = sleep
        self._latest: T | None = None
        self._pending = False
        self._closing = False
        self._wake = asyncio.Event()
        self._drawn = asyncio.Event()
        self._last_draw = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.draws = 0

    def update(self, state: T) -> None:
        """Offer a new state (never blocks). Ignored once closing."""
        if self._closing:
            return
        self._set(state)

    async def close(self, final: T | None = None, *, timeout: float = 30.0) -> None:
        """Draw `final` (after at most one interval) and stop."""
        if final is not None and not self._closing:
            self._set(final)
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("%s: the last draw took longer than %.0f s; dropped", self.name, timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_drawn(self) -> None:
        """Until the first draw has been attempted."""
        await self._drawn.wait()

    def _set(self, state: T) -> None:
        self._latest = state
        self._pending = True
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                delay = self._last_draw + self.interval - self._clock()
                if delay > 0:
                    await self._sleep(delay)  # newer states replace _latest meanwhile
                state, self._pending = self._latest, False
                self._last_draw = self._clock()
                try:
                    await self._draw(state)  # type: ignore[arg-type]
                except (aiohttp.ClientError, OSError) as exc:  # the connection, not a bug
                    log.warning("%s: drawing failed (%s); the next state will try again",
                                self.name, exc or type(exc).__name__)  # fmt: skip
                except Exception:
                    log.exception("%s: drawing failed; the next state will try again", self.name)
                finally:
                    self.draws += 1
                    self._drawn.set()
                if self._pending:
                    self._wake.set()
            if self._closing and not self._pending:
                return


# ------------------------------------------------------------ the Discord message


class ProgressMessage:
    """One job's progress message in its channel (found again after a restart)."""

    def __init__(
        self,
        client: discord.Client,
        store: Store,
        job: Job,
        config: DiscordConfig,
        *,
        buttons: Buttons = lambda view: None,
    ) -> None:
        self.store = store
        self._buttons = buttons
        self.job_id = job.id
        self.channel = client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        self.message_id = job.progress_message_id
        self.posted_at = job.progress_posted_at
        self.max_age = config.message_max_age
        self.replaced = 0  # messages posted to replace one that could not be edited
        self._posted = asyncio.Event()
        if self.message_id is not None:
            self._posted.set()
        self._coalescer: EditCoalescer[ProgressView] = EditCoalescer(
            self._draw, interval=config.edit_interval, name=f"progress-job-{job.id}"
        )

    def show(self, view: ProgressView) -> None:
        self._coalescer.update(view)

    async def close(self, final: ProgressView | None = None, *, timeout: float = 30.0) -> None:
        await self._coalescer.close(final, timeout=timeout)

    async def posted(self, timeout: float = 30.0) -> int | None:
        """The message's id once it exists (None if it could not be posted in time)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._posted.wait()
        return self.message_id

    def reference(self) -> discord.MessageReference | None:
        if self.message_id is None:
            return None
        return discord.MessageReference(
            message_id=self.message_id, channel_id=self.channel.id, fail_if_not_exists=False
        )

    def _too_old(self) -> bool:
        return self.posted_at is not None and time.time() - self.posted_at > self.max_age

    async def _draw(self, view: ProgressView) -> None:
        embed = build_embed(view, time.time())
        buttons = self._buttons(view)  # an edit with None removes the buttons shown before
        if self.message_id is not None and not self._too_old():
            try:
                await self.channel.get_partial_message(self.message_id).edit(
                    embed=embed, view=buttons
                )
                return
            except discord.HTTPException as exc:
                if exc.code not in (EDIT_LIMIT_REACHED, UNKNOWN_MESSAGE):
                    raise
                log.info("job %d: progress message %d cannot be edited (%s); posting a new one",
                         self.job_id, self.message_id, exc.code)  # fmt: skip
        await self._post(embed, buttons)

    async def _post(self, embed: discord.Embed, buttons: discord.ui.View | None) -> None:
        replacing = self.message_id is not None
        message = await self.channel.send(embed=embed, **with_buttons(buttons))
        if self.message_id is not None:  # the old one stays, showing the job: /forget edits it
            await self.store.record_message(self.job_id, self.channel.id, self.message_id,
                                            "progress")  # fmt: skip
        self.message_id, self.posted_at = message.id, time.time()
        self.replaced += replacing
        await self.store.set_progress_message(self.job_id, message.id, self.posted_at)
        self._posted.set()
