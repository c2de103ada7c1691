"""The bot's side of `[queue] backend = "arq"`: hand a run to the workers, follow it, stop it.

`render` puts the run's order in arq's queue (under a job id made of the run and the attempt,
so putting it there again after a restart is a no-op), then reads the run's stream from the
last message read (kept in the store, `bot/remote/runs.py`) until its outcome. Meanwhile it
watches the run: a run whose heartbeat lapsed, while arq no longer has it waiting, lost its
worker (killed, or its host gone) or was forgotten by Redis; it is put in the queue again as
the next attempt, and that worker finds every finished image, narration and clip in the
shared cache. `abort` stops a run wherever it is (arq's abort; its worker cancels the render).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus
from redis.exceptions import RedisError

from pipeline.errors import ReelbotError
from pipeline.events import ProgressEvent, event_from_dict
from pipeline.render import RenderResult

from ..config import BotSettings
from ..store import Job, SceneRecord, Store
from . import runs
from .orders import (
    QUEUE,
    RENDER_FUNCTION,
    RenderOrder,
    SceneChoiceCopy,
    alive_key,
    attempt_key,
    connect,
    events_key,
    result_from_dict,
)
from .runs import RemoteRun

__all__ = ["RemoteRenderFailed", "RemoteRenders"]

log = logging.getLogger(__name__)
READ_BLOCK = 1.0  # seconds one XREAD waits for messages before the run is looked at again


class RemoteRenderFailed(ReelbotError):
    """A worker's render failed; its reason, in the user's words, as the worker said it."""


class RemoteRenders:
    def __init__(self, settings: BotSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._redis: ArqRedis | None = None

    async def open(self) -> None:
        self._redis = await connect(self.settings.redis, "the bot")

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
            self._redis = None

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise ReelbotError("the bot is not connected to Redis")
        return self._redis

    async def render(
        self,
        job: Job,
        records: Sequence[SceneRecord],
        out: Path,
        *,
        join: bool,
        on_started: Callable[[], Awaitable[None]],
        on_event: Callable[[ProgressEvent], None],
        on_replay: Callable[[ProgressEvent], None],
    ) -> RenderResult:
        """Run the job on a worker; `on_started` once a worker has it, `on_event` for each of
        its progress events. A bot that restarted mid-run first gets the events it had
        already read through `on_replay` (to draw them again, not to count them again).
        Raises RemoteRenderFailed with the worker's reason."""
        run = await runs.run_of(self.store, job.id)
        scenes = [SceneChoiceCopy(r.number, r.seed, r.image_prompt, r.negative_prompt,
                                  r.media) for r in records]  # fmt: skip

        def order(run: RemoteRun) -> RenderOrder:
            return RenderOrder(
                job=job.id, run=run.run, attempt=run.attempt, script=job.script,
                filename=job.filename, options=job.options.model_dump(), scenes=scenes,
                out=str(out), join=join,
            )  # fmt: skip

        follower: _Follower | None = None
        queued = False
        unreachable = False
        while True:
            try:
                if not queued:
                    await self._enqueue(order(run))
                    queued = True
                if follower is None:
                    follower = _Follower(self, run, on_started, on_event)
                    await follower.replay(on_replay)
                outcome = await follower.read()
                if outcome is not None:
                    return outcome
                if await follower.lapsed():
                    run = await runs.next_attempt(self.store, run)
                    log.warning("job %d: neither rendering nor queued (its worker stopped "
                                "answering, or Redis lost it); queued again as attempt %d",
                                job.id, run.attempt)  # fmt: skip
                    await self._abort_attempt(follower.run)
                    follower.run = run
                    queued = False
                unreachable = False
            except (OSError, RedisError) as exc:  # Redis restarting: the job waits, then goes on
                if not unreachable:
                    log.warning("job %d: Redis cannot be reached (%s); retrying", job.id, exc)
                    unreachable = True
                if follower is not None:  # no sign of life was to be had: not a lapse
                    follower.seen = asyncio.get_running_loop().time()
                await asyncio.sleep(READ_BLOCK)

    async def abort(self, job_id: int) -> None:
        """Stop the job's run wherever it is (queued in arq, or rendering on a worker)."""
        rows = await self.store.fetch("SELECT 1 FROM remote_runs WHERE job_id = ?", (job_id,))
        if rows:
            await self._abort_attempt(await runs.run_of(self.store, job_id))

    async def ended(self, job_id: int) -> None:
        """The run is over (its outcome recorded): forget it, here and in Redis; an attempt
        still waiting in arq's queue (the run failed or timed out meanwhile) never starts."""
        rows = await self.store.fetch("SELECT 1 FROM remote_runs WHERE job_id = ?", (job_id,))
        if not rows:
            return
        run = await runs.run_of(self.store, job_id)
        await self._abort_attempt(run)
        await runs.forget(self.store, job_id)
        with contextlib.suppress(OSError, RedisError):
            await self.redis.delete(events_key(run.run), attempt_key(run.run))

    async def _enqueue(self, order: RenderOrder) -> None:
        await self.redis.set(attempt_key(order.run), order.attempt)
        queued = await self.redis.enqueue_job(
            RENDER_FUNCTION, order.to_json(), _job_id=order.arq_id, _queue_name=QUEUE
        )
        if queued is None:
            log.info("job %d: already in the workers' queue (%s)", order.job, order.arq_id)
        else:
            log.info("job %d: handed to the workers (%s)", order.job, order.arq_id)

    async def _abort_attempt(self, run: RemoteRun) -> None:
        """arq's abort without waiting for its outcome (`Job.abort` minus the wait): a worker
        cancels it if it runs it, and drops it if it is still queued."""
        with contextlib.suppress(OSError, RedisError):
            await self.redis.zadd(
                abort_jobs_ss, {f"{run.run}.{run.attempt}": int(time.time() * 1000)}
            )


class _Follower:
    """Reads one run's stream from where the bot left it, and watches its heartbeat."""

    def __init__(
        self,
        renders: RemoteRenders,
        run: RemoteRun,
        on_started: Callable[[], Awaitable[None]],
        on_event: Callable[[ProgressEvent], None],
    ) -> None:
        self.renders = renders
        self.redis = renders.redis
        self.run = run
        self.on_started = on_started
        self.on_event = on_event
        self.started = False
        self.last = run.last_event
        self.lease = renders.settings.redis.lease_seconds
        self.seen = asyncio.get_running_loop().time()  # the run's last sign of life

    async def replay(self, on_replay: Callable[[ProgressEvent], None]) -> None:
        """The current attempt's events up to the last one read (none for a new run)."""
        if self.last == "0-0":
            return
        messages = [json.loads(fields[b"m"]) for _, fields in
                    await self.redis.xrange(events_key(self.run.run), "-", self.last)]  # fmt: skip
        ours = [m for m in messages if m.get("attempt") == self.run.attempt]
        if any(m.get("kind") in ("started", "event") for m in ours):
            await self._started()
        for message in ours:
            if message.get("kind") == "event":
                on_replay(event_from_dict(message["event"]))

    async def read(self) -> RenderResult | None:
        """Messages up to now (waiting at most READ_BLOCK); the result once it comes."""
        key = events_key(self.run.run)
        reply = await self.redis.xread({key: self.last}, count=200, block=int(READ_BLOCK * 1000))
        last = self.last
        try:
            for _, messages in reply or []:
                for message_id, fields in messages:
                    last = message_id.decode() if isinstance(message_id, bytes) else message_id
                    outcome = await self._handle(json.loads(fields[b"m"]))
                    if outcome is not None:
                        return outcome
            return None
        finally:
            if last != self.last:
                self.last = last
                await runs.advance(self.renders.store, self.run.job_id, last)

    async def _handle(self, message: dict[str, Any]) -> RenderResult | None:
        kind = message.get("kind")
        if kind == "done":  # any attempt's video is the video (written whole, then renamed)
            return result_from_dict(message["result"])
        if message.get("attempt") != self.run.attempt:
            return None  # an attempt that was replaced
        self.seen = asyncio.get_running_loop().time()
        if kind == "started":
            await self._started()
        elif kind == "event":
            await self._started()  # a restarted bot may have read "started" before it stopped
            self.on_event(event_from_dict(message["event"]))
        elif kind == "failed":
            raise RemoteRenderFailed(str(message.get("reason", "the render failed")))

        return None

    async def _started(self) -> None:
        if not self.started:
            self.started = True
            await self.on_started()

    async def lapsed(self) -> bool:
        """True when the run has had no sign of life for `[redis] lease_seconds`: no worker
        renews its heartbeat and arq does not have it waiting for one."""
        now = asyncio.get_running_loop().time()
        if await self.redis.exists(alive_key(self.run.run)):
            self.seen = now
            await self._started()  # a restarted bot: the worker had it already
            return False
        arq_job = ArqJob(f"{self.run.run}.{self.run.attempt}", self.redis, _queue_name=QUEUE)
        if await arq_job.status() in (JobStatus.queued, JobStatus.deferred):
            self.seen = now
            return False
        return now - self.seen > self.lease
