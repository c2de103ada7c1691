"""How long a render has left, from what this machine measured on earlier renders.

    earlier renders' events ──measure()──► samples per stage ──(kept by the front end)──► Rates
    Rates + the plan's Shape + this render's events ──Estimator.remaining(t)──► seconds left

Front-end neutral and pure: no clock, no I/O. The front end keeps the samples (the bot in its
store, a rolling median per stage) and feeds this render's events in as they come.

The model is the render's own critical path (`pipeline/render.py`):

- every scene's speech starts at once; they finish together at the measured speech rate
  (seconds of speech work per character of narration, all scenes speaking at once);
- images are made one at a time through the image slot, in scene order, each taking the
  measured image latency; the one in flight has what is left of it;
- a scene's clip is encoded once its image and speech exist, `encoders` at a time, at the
  measured encode speed (seconds of encoding per second of clip);
- then the join and the sound pass, as long as they measured.

So while images are still ahead, the time left is at least the images not started × the image
latency (plus what is left of the one being made).
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from .events import JobDone, JobFailed, ProgressEvent, SceneEvent, Stage, Status
from .plan import RenderPlan

__all__ = [
    "Estimator",
    "Rates",
    "SceneShape",
    "Shape",
    "Speed",
    "measure",
    "median_rates",
    "shape_of",
]

FINISHED = (Status.DONE, Status.CACHED)


class Speed(StrEnum):
    """What is measured, one sample at a time."""

    IMAGE = "image"  # seconds per image, in the slot (retries and rate-limit waits included)
    SPEECH = "speech"  # seconds of speech work per character, all scenes speaking at once
    VOICE = "voice"  # seconds of narration per character (how fast the voice speaks)
    ENCODE = "encode"  # seconds of encoding per second of clip
    # Seconds the join and the sound pass take: a stream copy and an audio-only pass, whose
    # time hardly grows with the video (ffmpeg's start-up is most of it).
    FINISH = "finish"


@dataclass(frozen=True)
class Rates:
    """One value per `Speed`. The defaults are a modest machine's, used until one is measured."""

    image: float = 6.0
    speech: float = 0.02
    voice: float = 0.065
    encode: float = 0.6
    finish: float = 1.0

    def of(self, speed: Speed) -> float:
        return float(getattr(self, speed.value))


def median_rates(samples: Mapping[Speed, Sequence[float]], defaults: Rates = Rates()) -> Rates:
    """The median of each stage's samples; a stage never measured keeps its default."""
    values = {s.value: statistics.median(v) for s, v in samples.items() if v}
    return replace(defaults, **values)


@dataclass(frozen=True)
class SceneShape:
    number: int
    chars: int  # characters of narration
    image: bool = True  # an image has to be made (not in the cache, not the scene's own media)


@dataclass(frozen=True)
class Shape:
    """What a render has to do, known before it starts (from its plan and the cache)."""

    scenes: tuple[SceneShape, ...]
    join: bool = True  # False: a review round, which stops once every clip exists
    encoders: int = 1  # clips encoded at once

    @property
    def images(self) -> int:
        return sum(s.image for s in self.scenes)


@dataclass
class _Scene:
    shape: SceneShape
    status: dict[Stage, Status] = field(default_factory=dict)
    started: dict[Stage, float] = field(default_factory=dict)
    seconds: dict[Stage, float] = field(default_factory=dict)  # audio and clip durations

    def finished(self, stage: Stage) -> bool:
        return self.status.get(stage) in FINISHED


class Estimator:
    """One render's time left: feed it the render's events (`see`), ask `remaining(t)` with
    `t` in the events' own clock (seconds since the render started)."""

    def __init__(self, rates: Rates, shape: Shape) -> None:
        self.rates = rates
        self.shape = shape
        self._scenes = {s.number: _Scene(s) for s in shape.scenes}
        self._speech_started: float | None = None
        self._join: Status | None = None
        self._join_started: float | None = None
        self._ended = False

    def see(self, event: ProgressEvent) -> None:
        if isinstance(event, JobDone | JobFailed):
            self._ended = True
        if not isinstance(event, SceneEvent):
            return
        if event.stage is Stage.JOIN:
            self._join = event.status
            if event.status is Status.STARTED:
                self._join_started = event.t
            return
        scene = self._scenes.get(event.scene)
        if scene is None:
            return
        scene.status[event.stage] = event.status
        if event.status is Status.STARTED:
            scene.started[event.stage] = event.t
            if event.stage is Stage.AUDIO and self._speech_started is None:
                self._speech_started = event.t
        if event.status is Status.CACHED and event.stage is Stage.IMAGE:
            scene.shape = replace(scene.shape, image=False)
        if event.seconds is not None and event.stage in (Stage.AUDIO, Stage.CLIP):
            scene.seconds[event.stage] = event.seconds

    def remaining(self, t: float) -> float:
        """Seconds until the video is made (a review round: until every clip is)."""
        return max(0.0, self._end(t) - t)

    def images_ahead(self) -> int:
        """Images still to make (the one in flight included)."""
        return sum(
            1 for s in self._scenes.values() if s.shape.image and not s.finished(Stage.IMAGE)
        )

    # ------------------------------------------------------------ the critical path

    def _end(self, t: float) -> float:
        rates = self.rates
        if self._ended or self._join in FINISHED:
            return t
        if self._join_started is not None:
            return max(t, self._join_started + rates.finish)
        scenes = [self._scenes[s.number] for s in self.shape.scenes]
        speech_ready = self._speech_ready(t, scenes)
        image_ready = self._image_ready(t, scenes)
        clips_end = t
        free = [t] * max(1, self.shape.encoders)  # when each encoder is free
        heapq.heapify(free)
        # A clip in flight keeps its encoder; the others start as their scenes become ready.
        for scene in scenes:
            if scene.status.get(Stage.CLIP) is Status.STARTED:
                length = self._clip_seconds(scene) * rates.encode
                end = max(t, scene.started[Stage.CLIP] + length)
                heapq.heapreplace(free, max(free[0], end))
                clips_end = max(clips_end, end)
        waiting = [
            s
            for s in scenes
            if not s.finished(Stage.CLIP) and s.status.get(Stage.CLIP) is not Status.STARTED
        ]
        waiting.sort(key=lambda s: max(speech_ready[s.shape.number], image_ready[s.shape.number]))
        for scene in waiting:
            number = scene.shape.number
            start = max(speech_ready[number], image_ready[number], heapq.heappop(free))
            end = start + self._clip_seconds(scene) * rates.encode
            heapq.heappush(free, end)
            clips_end = max(clips_end, end)
        if not self.shape.join:
            return clips_end
        return clips_end + rates.finish

    def _speech_ready(self, t: float, scenes: Sequence[_Scene]) -> dict[int, float]:
        """All scenes speak at once and finish together, at the measured rate."""
        pending = [s for s in scenes if not s.finished(Stage.AUDIO)]
        ready = {s.shape.number: t for s in scenes}
        if not pending:
            return ready
        made = [s for s in scenes if s.status.get(Stage.AUDIO) is not Status.CACHED]
        start = self._speech_started if self._speech_started is not None else t
        batch_end = start + sum(s.shape.chars for s in made) * self.rates.speech
        # Late against the prediction: what is still speaking needs at least its own share.
        late = t + sum(s.shape.chars for s in pending) * self.rates.speech / 4
        end = batch_end if batch_end >= t else late
        for scene in pending:
            ready[scene.shape.number] = end
        return ready

    def _image_ready(self, t: float, scenes: Sequence[_Scene]) -> dict[int, float]:
        """One image at a time, in scene order; the one in flight has what is left of it."""
        ready = {s.shape.number: t for s in scenes}
        latency = self.rates.image
        slot_free = t
        for scene in scenes:
            if scene.status.get(Stage.IMAGE) is Status.STARTED:
                left = max(0.0, scene.started[Stage.IMAGE] + latency - t)
                slot_free = max(slot_free, t + left)
                ready[scene.shape.number] = t + left
        for scene in scenes:
            status = scene.status.get(Stage.IMAGE)
            if not scene.shape.image or status in (*FINISHED, Status.STARTED, Status.FAILED):
                continue
            slot_free += latency
            ready[scene.shape.number] = slot_free
        return ready

    def _clip_seconds(self, scene: _Scene) -> float:
        if Stage.CLIP in scene.seconds:
            return scene.seconds[Stage.CLIP]
        if Stage.AUDIO in scene.seconds:
            return scene.seconds[Stage.AUDIO]
        return scene.shape.chars * self.rates.voice


def measure(events: Iterable[ProgressEvent], shape: Shape) -> dict[Speed, list[float]]:
    """The samples one finished (or failed) render gives: each image made, the speech of the
    scenes spoken now (one sample), each voice's pace, each clip encoded, the join."""
    chars = {s.number: s.chars for s in shape.scenes}
    samples: dict[Speed, list[float]] = {speed: [] for speed in Speed}
    started: dict[tuple[int, Stage], float] = {}
    speech_start: float | None = None
    speech_end: float | None = None
    spoken = 0
    for event in events:
        if not isinstance(event, SceneEvent):
            continue
        key = (event.scene, event.stage)
        if event.status is Status.STARTED:
            started[key] = event.t
            if event.stage is Stage.AUDIO and speech_start is None:
                speech_start = event.t
            continue
        if event.status not in FINISHED:
            continue
        size = chars.get(event.scene, 0)
        if event.stage is Stage.AUDIO and event.seconds and size:
            samples[Speed.VOICE].append(event.seconds / size)
        if event.status is not Status.DONE or key not in started:
            continue
        took = event.t - started[key]
        if event.stage is Stage.IMAGE:
            samples[Speed.IMAGE].append(took)
        elif event.stage is Stage.AUDIO:
            spoken += size
            speech_end = event.t
        elif event.stage is Stage.CLIP and event.seconds:
            samples[Speed.ENCODE].append(took / event.seconds)
        elif event.stage is Stage.JOIN:
            samples[Speed.FINISH].append(took)
    if speech_start is not None and speech_end is not None and spoken:
        samples[Speed.SPEECH].append((speech_end - speech_start) / spoken)
    return {speed: values for speed, values in samples.items() if values}


def shape_of(
    plan: RenderPlan, to_make: Collection[int], *, join: bool = True, encoders: int = 1
) -> Shape:
    """A plan's shape: `to_make` are the scenes whose image must be made
    (`pipeline.render.images_to_make`)."""
    scenes = tuple(SceneShape(s.number, len(s.narration), s.number in to_make)
                   for s in plan.scenes)  # fmt: skip
    return Shape(scenes, join=join, encoders=encoders)
