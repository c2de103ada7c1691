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
    "SceneEvent",
    "Stage",
    "Status",
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


ProgressEvent = JobStarted | SceneEvent | JobDone | JobFailed
EventSink = Callable[[ProgressEvent], None]
