"""What travels between the bot and its workers through Redis: a render order, the messages
of a run's event stream, a render's result, and the names of the keys.

A *run* is one pass of a job through the render queue (a review round, the join after it, a
scene made again); its `run` name is fresh each time. An *attempt* is one worker's go at a
run: when a worker dies the bot hands the run to another worker as the next attempt, and the
stream, the run's name and the cache carry over.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

from pipeline.errors import ReelbotError
from pipeline.events import event_from_dict, event_to_dict
from pipeline.render import RenderResult, SceneArtifacts

from ..config import RedisConfig
from ..store import StoredMedia

__all__ = [
    "QUEUE",
    "RENDER_FUNCTION",
    "RenderOrder",
    "SceneChoiceCopy",
    "alive_key",
    "attempt_key",
    "connect",
    "events_key",
    "lua",
    "redis_where",
    "result_from_dict",
    "result_to_dict",
]

log = logging.getLogger(__name__)

QUEUE = "reelbot:renders"  # arq's queue name
RENDER_FUNCTION = "render"  # the worker's arq function
RETRY_DELAY = 1.0  # seconds between two tries to reach Redis


def events_key(run: str) -> str:
    """The run's stream of messages, worker → bot."""
    return f"reelbot:events:{run}"


def alive_key(run: str) -> str:
    """The run's heartbeat lease: `<attempt>:<worker>` while a worker renders it."""
    return f"reelbot:alive:{run}"


def attempt_key(run: str) -> str:
    """The run's current attempt: a worker holding an older one has been replaced."""
    return f"reelbot:attempt:{run}"


@dataclass(frozen=True)
class SceneChoiceCopy:
    """A scene's image as the job's store row holds it (bot.jobs.SceneChoice)."""

    number: int
    seed: int
    image_prompt: str
    negative_prompt: str
    media: str | None = None  # the picture uploaded for it (StoredMedia as JSON), if any

    @property
    def own_media(self) -> StoredMedia | None:
        return StoredMedia.model_validate_json(self.media) if self.media else None


@dataclass(frozen=True)
class RenderOrder:
    """Everything a worker needs to render a run; the plan is made from it as the bot makes
    it (`bot.jobs.plan_job`), with the same config file."""

    job: int
    run: str
    attempt: int
    script: str
    filename: str
    options: dict[str, Any]
    scenes: list[SceneChoiceCopy]
    out: str  # the video's path, under the shared [storage] data_dir
    join: bool

    @property
    def arq_id(self) -> str:
        return f"{self.run}.{self.attempt}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RenderOrder:
        data = json.loads(text)
        data["scenes"] = [SceneChoiceCopy(**s) for s in data["scenes"]]
        return cls(**data)


def result_to_dict(result: RenderResult) -> dict[str, Any]:
    def plain(value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    return {
        "output": str(result.output),
        "duration": result.duration,
        "scenes": [{k: plain(v) for k, v in asdict(s).items()} for s in result.scenes],
        "events": [event_to_dict(e) for e in result.events],
    }


def result_from_dict(data: dict[str, Any]) -> RenderResult:
    paths = {"audio", "image", "clip", "captions", "sound"}
    scenes: list[SceneArtifacts] = []
    for scene in data["scenes"]:
        values: dict[str, Any] = {
            k: Path(v) if k in paths and v is not None else v for k, v in scene.items()
        }
        scenes.append(SceneArtifacts(**values))
    events = [event_from_dict(e) for e in data["events"]]
    return RenderResult(Path(data["output"]), float(data["duration"]), scenes, events)


def redis_settings(config: RedisConfig) -> RedisSettings:
    settings = RedisSettings.from_dsn(config.url)
    settings.conn_retries = 0  # `connect` retries, and says so in its own words
    settings.conn_timeout = 5
    return settings


async def lua(redis: ArqRedis, script: str, keys: Sequence[str], args: Sequence[object]) -> Any:
    """Run a Lua script (redis-py types `eval` for its sync and async clients at once)."""
    reply = redis.eval(script, len(keys), *keys, *(str(a) for a in args))
    return await cast(Awaitable[Any], reply)


def redis_where(config: RedisConfig) -> str:
    """`host:port/db` of `[redis] url`, to name in messages (never its password)."""
    settings = RedisSettings.from_dsn(config.url)
    return f"{settings.host}:{settings.port}/{settings.database}"


async def connect(config: RedisConfig, who: str) -> ArqRedis:
    """A connection to `[redis] url`, tried every second for `[redis] connect_timeout`
    seconds, saying so; then a ReelbotError naming the URL (never its password)."""
    settings = redis_settings(config)
    where = redis_where(config)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + config.connect_timeout
    said = False
    while True:
        try:
            return await create_pool(settings, default_queue_name=QUEUE)
        except (OSError, RedisError, TimeoutError) as exc:
            if loop.time() >= give_up:
                raise ReelbotError(
                    f"{who} cannot reach Redis at {where} ([redis] url): {_why(exc)}; "
                    f"gave up after {config.connect_timeout:.0f} s"
                ) from None
            if not said:
                log.warning("%s cannot reach Redis at %s (%s); retrying for %.0f s",
                            who, where, _why(exc), config.connect_timeout)  # fmt: skip
                said = True
            await asyncio.sleep(RETRY_DELAY)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200].rstrip(".")
