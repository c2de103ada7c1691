"""A render's state as seen from its events: one object any front end can draw."""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import (
    JobDone,
    JobFailed,
    JobStarted,
    ProgressEvent,
    RetryWait,
    SceneEvent,
    Stage,
    Status,
)

__all__ = ["RenderProgress", "SceneProgress"]

SCENE_STAGES = (Stage.AUDIO, Stage.IMAGE, Stage.CLIP)


@dataclass
class SceneProgress:
    number: int
    stages: dict[Stage, Status] = field(default_factory=dict)
    message: str = ""
    # What the scene is waiting for now, e.g. "waiting for Together's rate limit (40 s)";
    # cleared by the next event of the stage that waits.
    note: str = ""
    note_stage: Stage | None = None
    image_path: str | None = None
    seed: int | None = None

    def status(self, stage: Stage) -> Status | None:
        return self.stages.get(stage)


@dataclass
class RenderProgress:
    title: str = ""
    scenes: list[SceneProgress] = field(default_factory=list)
    join: Status | None = None
    elapsed: float = 0.0
    done: JobDone | None = None
    failed: JobFailed | None = None

    def apply(self, event: ProgressEvent) -> None:
        self.elapsed = max(self.elapsed, event.t)
        if isinstance(event, JobStarted):
            self.title = event.title
            self.scenes = [SceneProgress(n) for n in range(1, event.scenes + 1)]
        elif isinstance(event, SceneEvent):
            self._apply_scene(event)
        elif isinstance(event, RetryWait):
            if 1 <= event.scene <= len(self.scenes):
                scene = self.scenes[event.scene - 1]
                scene.note, scene.note_stage = event.reason, event.stage
        elif isinstance(event, JobDone):
            self.done = event
        else:
            self.failed = event

    def _apply_scene(self, event: SceneEvent) -> None:
        if event.stage is Stage.JOIN:
            self.join = event.status
            return
        if not 1 <= event.scene <= len(self.scenes):
            return
        scene = self.scenes[event.scene - 1]
        scene.stages[event.stage] = event.status
        if event.stage is scene.note_stage:
            scene.note, scene.note_stage = "", None
        if event.message:
            scene.message = event.message
        if event.seed is not None:
            scene.seed = event.seed
        if event.stage is Stage.IMAGE and event.path is not None:
            scene.image_path = str(event.path)

    @property
    def fraction(self) -> float:
        """Share of the work finished: three stages per scene, plus the join."""
        total = 3 * len(self.scenes) + 1
        finished = sum(
            1
            for scene in self.scenes
            for stage in SCENE_STAGES
            if scene.status(stage) in (Status.DONE, Status.CACHED)
        )
        finished += self.join in (Status.DONE, Status.CACHED)
        return finished / total if total else 0.0

    def estimate_remaining(self) -> float | None:
        """Seconds left, extrapolated from the share done so far; None until it means anything."""
        fraction = self.fraction
        if fraction < 0.1 or fraction >= 1.0 or self.elapsed <= 0:
            return None
        return self.elapsed * (1 - fraction) / fraction
