"""Progress events: what a render reports, in order, to any front end.

Each event carries `t`, seconds since the render started (monotonic clock), so a consumer can
draw progress now and a timeline later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "EventSink",
    "JobDone",
    "JobFailed",
    "JobStarted",
    "ProgressEvent",
    "RetryWait",
    "SceneEvent",
    "Stage",
    "Status",
    "event_from_dict",
    "event_to_dict",
]


class Stage(StrEnum):
    AUDIO = "audio"
    IMAGE = "image"
    CLIP = "clip"
    JOIN = "join"


class Status(StrEnum):
    WAITING = "waiting"  # queued for a shared slot (the image API, an encoder)
    STARTED = "started"
    DONE = "done"
    CACHED = "cached"  # done earlier; the artifact was reused
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobStarted:
    t: float
    title: str
    scenes: int


@dataclass(frozen=True, slots=True)
class SceneEvent:
    """A stage of one scene changed state. `scene` is 0 for the final join."""

    t: float
    scene: int
    stage: Stage
    status: Status
    path: Path | None = None
    message: str = ""
    seconds: float | None = None  # audio/clip duration once known
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class RetryWait:
    """A stage of one scene waits before trying again, e.g. out a service's rate limit.
    `reason` is said to the user as it is: "waiting for Together's rate limit (40 s)"."""

    t: float
    scene: int
    stage: Stage
    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class JobDone:
    t: float
    output: Path
    duration: float


@dataclass(frozen=True, slots=True)
class JobFailed:
    t: float
    reason: str
    scene: int | None = None
    stage: Stage | None = None


ProgressEvent = JobStarted | SceneEvent | RetryWait | JobDone | JobFailed
EventSink = Callable[[ProgressEvent], None]


def event_to_dict(event: ProgressEvent) -> dict[str, object]:
    """A JSON-ready form of an event (for storing a render's history)."""
    data: dict[str, object] = {"type": type(event).__name__}
    for name in event.__slots__:
        value = getattr(event, name)
        data[name] = str(value) if isinstance(value, Path) else value
    return data


def event_from_dict(data: dict[str, object]) -> ProgressEvent:
    kinds: dict[str, type[ProgressEvent]] = {
        cls.__name__: cls for cls in (JobStarted, SceneEvent, RetryWait, JobDone, JobFailed)
    }
    values = {k: v for k, v in data.items() if k != "type"}
    kind = kinds[str(data["type"])]
    for name in ("path", "output"):
        if values.get(name) is not None:
            values[name] = Path(str(values[name]))
    for name, enum in (("stage", Stage), ("status", Status)):
        if values.get(name) is not None:
            values[name] = enum(str(values[name]))
    return kind(**values)  # type: ignore[arg-type]  # values were checked by type above
