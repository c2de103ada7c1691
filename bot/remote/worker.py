"""`reelbot worker --config FILE`: render the bot's jobs, fed by arq (`[queue] backend = "arq"`).

Start any number, on any host that reaches `[redis] url` and mounts the shared `[storage]
data_dir`, with the same config file and keys as the bot. Each runs up to `[queue]
max_concurrent_renders` renders at once, under `[queue] job_timeout` (arq's `job_timeout`).

A render here: take the run's heartbeat lease (`reelbot:alive:<run>`, renewed every third of
`[redis] lease_seconds`), say "started" on the run's stream, render (pipeline.Renderer, the
shared cache, the image slot as Redis leases), send each progress event, then the outcome.
A worker that finds its heartbeat taken by a newer attempt (it stalled and the bot gave the
run to another worker) stops the render. arq's own retry is off (`max_tries = 1`): the bot
re-enqueues a run whose heartbeat lapsed, as the next attempt.

Exit status: 0 after SIGTERM/SIGINT (the renders in flight are stopped; their runs go to other
workers); 1 when Redis cannot be reached for `[redis] connect_timeout` seconds; 2 for a bad
config. Failures to start are one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.exceptions import RedisError

from pipeline.cache import ArtifactCache
from pipeline.config import load_settings
from pipeline.errors import ConfigError, ReelbotError
from pipeline.events import ProgressEvent, event_to_dict
from pipeline.image_slot import ImageSlot, image_keys, stop_grace
from pipeline.images import make_images
from pipeline.job_order import OrderedSlots
from pipeline.logs import setup_logging
from pipeline.render import Renderer
from pipeline.script import parse_script
from pipeline.tts import check_tts, close_tts, make_tts

from ..config import BotSettings
from ..jobs import plan_job
from ..store import JobOptions
from .image_lease import RedisKeys
from .orders import (
    QUEUE,
    RENDER_FUNCTION,
    RenderOrder,
    alive_key,
    attempt_key,
    connect,
    events_key,
    lua,
    redis_where,
    result_to_dict,
)

__all__ = ["main", "run_worker"]

log = logging.getLogger("bot.worker")
STREAM_DAYS = 7  # a run's stream is removed by the bot when it has read it; this is a backstop


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="reelbot worker", description="Render the bot's jobs.")
    parser.add_argument("--config", type=Path, help="a config.toml")
    parser.add_argument("-v", "--verbose", action="store_true", help="log in detail")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, BotSettings)
        check_tts(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.queue.backend != "arq":
        print('error: a worker renders for `[queue] backend = "arq"`; this config has backend = '
              f'"{settings.queue.backend}" (docs/scale-out.md)', file=sys.stderr)  # fmt: skip
        return 2
    setup_logging(2 if args.verbose else 1)
    logging.getLogger("arq").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        asyncio.run(run_worker(settings))
    except ReelbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def run_worker(settings: BotSettings) -> None:
    """Serve renders until SIGTERM/SIGINT; reconnect if Redis goes away, within
    `[redis] connect_timeout`."""
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    async with httpx.AsyncClient() as client:
        tts = make_tts(settings, client)
        try:
            while True:
                redis = await connect(settings.redis, f"worker {name}")
                renders = WorkerRenders(settings, redis, client, tts, name)
                worker = Worker(
                    functions=[func(_render, name=RENDER_FUNCTION)],
                    queue_name=QUEUE,
                    redis_pool=redis,
                    ctx={"reelbot": renders},
                    max_jobs=settings.queue.max_concurrent_renders,
                    job_timeout=settings.queue.job_timeout,
                    max_tries=1,
                    retry_jobs=False,
                    allow_abort_jobs=True,
                    keep_result=3600,
                    poll_delay=0.2,
                    on_shutdown=renders.shutdown,
                )
                log.info("worker %s: taking renders from %s", name, redis_where(settings.redis))
                try:
                    await worker.async_run()
                    break
                except asyncio.CancelledError:  # SIGTERM/SIGINT: arq cancels its main task
                    break
                except (OSError, RedisError) as exc:
                    log.warning("worker %s lost Redis (%s); reconnecting", name, exc)
                finally:
                    with contextlib.suppress(OSError, RedisError):
                        await worker.close()
        finally:
            await close_tts(tts)
    log.info("worker %s stopped", name)


async def _render(ctx: dict[str, Any], order: str) -> str:
    renders: WorkerRenders = ctx["reelbot"]
    return await renders.render(RenderOrder.from_json(order))


class WorkerRenders:
    """What one worker process shares between its renders (as the bot's JobRunner does)."""

    def __init__(
        self,
        settings: BotSettings,
        redis: ArqRedis,
        client: httpx.AsyncClient,
        tts: Any,
        name: str,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.client = client
        self.tts = tts
        self.name = name
        # The image keys' slots are leases in Redis, shared by every worker; waiting requests
        # (and encodes) are served in job order within this worker.
        keys = RedisKeys(redis, image_keys(settings), settings.images.max_concurrency,
                         ttl=settings.redis.lease_seconds)  # fmt: skip
        self.image_slot = ImageSlot(keys, timeout=settings.images.timeout)
        self.encoder_slot: asyncio.Semaphore = OrderedSlots(settings.video.encoder_slots)
        self.cache = ArtifactCache(settings.storage.data_dir / "cache")

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        # An image in flight is paid for: let it land in the shared cache (bounded).
        await self.image_slot.drain(stop_grace(self.settings.images))

    async def render(self, order: RenderOrder) -> str:
        current = await self.redis.get(attempt_key(order.run))
        if current is not None and int(current) != order.attempt:
            log.info("job %d: attempt %d was replaced by attempt %s; skipping it",
                     order.job, order.attempt, current.decode())  # fmt: skip
            return "replaced"
        stream = _Stream(self.redis, events_key(order.run), order.attempt,
                         self.settings.redis.connect_timeout)  # fmt: skip
        heartbeat = _Heartbeat(self, order)
        await heartbeat.take()
        render = asyncio.current_task()
        assert render is not None
        heartbeat.start(render)
        stream.send({"kind": "started", "worker": self.name})
        log.info("job %d: rendering (attempt %d)", order.job, order.attempt)
        try:
            renderer = Renderer(
                self.settings,
                tts=self.tts,
                images=make_images(self.settings, self.client),
                cache=self.cache,
                on_event=stream.event,
                image_slot=self.image_slot,
                encoder_slot=self.encoder_slot,
                label=f"job {order.job}",
                order=order.job,
            )
            script = parse_script(order.script, filename=order.filename,
                                  limits=self.settings.limits)  # fmt: skip
            options = JobOptions.model_validate(order.options)
            plan = plan_job(self.settings, script, options, order.scenes)
            result = await renderer.render(plan, Path(order.out), join=order.join)
            stream.send({"kind": "done", "result": result_to_dict(result)})
            log.info("job %d: done (attempt %d)", order.job, order.attempt)
            return "done"
        except asyncio.CancelledError:
            if heartbeat.lost:
                log.warning("job %d: another worker has its run now; stopped", order.job)
            else:  # aborted (/cancel) or this worker is stopping: the bot decides
                log.info("job %d: stopped (attempt %d)", order.job, order.attempt)
                stream.send({"kind": "stopped"})
            raise
        except ReelbotError as exc:
            log.warning("job %d failed: %s", order.job, exc)
            stream.send({"kind": "failed", "reason": str(exc)})
            return "failed"
        except Exception:
            log.exception("job %d failed unexpectedly", order.job)
            stream.send({"kind": "failed",
                         "reason": "an unexpected error stopped the render; the worker's log "
                                   "has the details"})  # fmt: skip
            return "failed"
        finally:
            await stream.close()
            await heartbeat.stop()


class _Stream:
    """The run's event stream: messages XADDed in order by one writer task."""

    def __init__(self, redis: ArqRedis, key: str, attempt: int, patience: float) -> None:
        self.redis = redis
        self.key = key
        self.attempt = attempt
        self.patience = patience  # seconds to keep trying while Redis cannot be reached
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write(), name=f"{key} writer")

    def event(self, event: ProgressEvent) -> None:
        self.send({"kind": "event", "event": event_to_dict(event)})

    def send(self, message: dict[str, Any]) -> None:
        self._queue.put_nowait({**message, "attempt": self.attempt})

    async def close(self) -> None:
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while (message := await self._queue.get()) is not None:
            data = json.dumps(message, ensure_ascii=False)
            give_up = loop.time() + self.patience
            while True:
                try:
                    await self.redis.xadd(self.key, {"m": data})
                    await self.redis.expire(self.key, STREAM_DAYS * 86400)
                    break
                except (OSError, RedisError) as exc:  # Redis restarting: keep the order
                    if loop.time() > give_up:  # the bot gives the run to another worker
                        log.error("gave up sending events to %s: %s", self.key, exc)
                        return
                    log.warning("cannot send an event to %s (%s); retrying", self.key, exc)
                    await asyncio.sleep(1.0)


class _Heartbeat:
    """The run's lease, `<attempt>:<worker>`: taken at start (a newer attempt's worker takes
    it over), renewed while the render runs, and the render stopped if another holds it."""

    def __init__(self, renders: WorkerRenders, order: RenderOrder) -> None:
        self.redis = renders.redis
        self.key = alive_key(order.run)
        self.value = f"{order.attempt}:{renders.name}"
        self.attempt_key = attempt_key(order.run)
        self.attempt = order.attempt
        self.ttl = renders.settings.redis.lease_seconds
        self.job = order.job
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    async def take(self) -> None:
        await self.redis.set(self.key, self.value, px=int(self.ttl * 1000))

    def start(self, render: asyncio.Task[Any]) -> None:
        self._task = asyncio.create_task(self._renew(render), name=f"{self.key} heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.lost:
            with contextlib.suppress(OSError, RedisError):
                await lua(self.redis, _DELETE_IF_MINE, [self.key], [self.value])

    async def _renew(self, render: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                held = await lua(
                    self.redis,
                    _RENEW_IF_MINE,
                    [self.key, self.attempt_key],
                    [self.value, int(self.ttl * 1000), self.attempt],
                )
            except (OSError, RedisError) as exc:
                log.warning("job %d: cannot renew its heartbeat (%s)", self.job, exc)
                continue
            if not held:
                self.lost = True
                render.cancel()
                return


# Renew the heartbeat if it is ours; take it again if it lapsed and no newer attempt exists.
_RENEW_IF_MINE = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
local current = redis.call('get', KEYS[2])
if v == false and (current == false or current == ARGV[3]) then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_DELETE_IF_MINE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
