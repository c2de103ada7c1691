"""The render: every scene's audio starts at once, images go through one shared slot, and
each scene's clip is encoded the moment its image and audio both exist; then the clips are
joined by stream copy.

    script → plan → (audio ∥ image) per scene → clip per scene → join → video
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from .cache import ArtifactCache, content_key
from .config import Settings
from .errors import ReelbotError, SceneFailed
from .events import (
    EventSink,
    JobDone,
    JobFailed,
    JobStarted,
    ProgressEvent,
    SceneEvent,
    Stage,
    Status,
)
from .images import ImageProvider, make_images
from .media import probe_duration
from .plan import RenderPlan, ScenePlan
from .tts import TTSProvider, make_tts
from .video import ClipSpec, encode_clip, join_clips

__all__ = ["RenderResult", "Renderer", "SceneArtifacts", "render_plan"]

log = logging.getLogger(__name__)
T = TypeVar("T")
# Bump when the clip recipe changes, so cached clips made the old way are not reused.
CLIP_RECIPE = 1


@dataclass(frozen=True)
class SceneArtifacts:
    number: int
    audio: Path
    audio_seconds: float
    image: Path
    clip: Path
    clip_seconds: float


@dataclass
class RenderResult:
    output: Path
    duration: float
    scenes: list[SceneArtifacts]
    events: list[ProgressEvent] = field(default_factory=list)


class Renderer:
    """Runs one render plan. Providers are passed in; the CLI and the bot build them."""

    def __init__(
        self,
        settings: Settings,
        *,
        tts: TTSProvider,
        images: ImageProvider,
        cache: ArtifactCache | None = None,
        on_event: EventSink | None = None,
        image_slot: asyncio.Semaphore | None = None,
        encoder_slot: asyncio.Semaphore | None = None,
    ) -> None:
        self.settings = settings
        self.tts = tts
        self.images = images
        self.cache = cache or ArtifactCache(settings.storage.data_dir / "cache")
        self._sink = on_event
        # Shared slots may be passed in so several renders in one process share the limits.
        self.image_slot = image_slot or asyncio.Semaphore(settings.images.max_concurrency)
        self.encoder_slot = encoder_slot or asyncio.Semaphore(settings.video.encoder_slots)
        self.events: list[ProgressEvent] = []
        self._t0 = time.monotonic()
        # Set when a scene has failed: work still waiting for a slot stops instead of
        # spending a paid image request on a render that is already lost.
        self._failing = False

    # ------------------------------------------------------------ events

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _emit(self, event: ProgressEvent) -> None:
        self.events.append(event)
        if self._sink is not None:
            try:
                self._sink(event)
            except Exception:  # a broken front end must not break the render
                log.exception("progress consumer failed on %s", event)

    def _scene_event(self, scene: int, stage: Stage, status: Status, **extra: object) -> None:
        self._emit(SceneEvent(self._now(), scene, stage, status, **extra))  # type: ignore[arg-type]

    # ------------------------------------------------------------ the whole render

    async def render(
        self, plan: RenderPlan, out: Path, *, sequential: bool = False
    ) -> RenderResult:
        """Render `plan` to `out`. `sequential` runs one scene after another, image → audio →
        clip (the old model, kept for benchmarks)."""
        self._t0 = time.monotonic()
        self.events = []
        self._failing = False
        self._emit(JobStarted(0.0, plan.title, len(plan.scenes)))
        try:
            if sequential:
                scenes = [await self._scene_sequential(plan, s) for s in plan.scenes]
            else:
                scenes = await self._scenes_pipelined(plan)
            self._scene_event(0, Stage.JOIN, Status.STARTED)
            out.parent.mkdir(parents=True, exist_ok=True)
            temp = out.with_name(f".{out.stem}.part.mp4")
            try:
                await join_clips([s.clip for s in scenes], temp, title=plan.title,
                                 timeout=self.settings.video.timeout)  # fmt: skip
                temp.replace(out)
            finally:
                temp.unlink(missing_ok=True)
            duration = await probe_duration(out)
            self._scene_event(0, Stage.JOIN, Status.DONE, path=out, seconds=duration)
        except asyncio.CancelledError:
            self._emit(JobFailed(self._now(), "the render was cancelled"))
            raise
        except SceneFailed as exc:
            self._emit(JobFailed(self._now(), str(exc), exc.scene, Stage(exc.stage)))
            raise
        except ReelbotError as exc:
            self._emit(JobFailed(self._now(), f"joining the clips: {exc}", None, Stage.JOIN))
            raise
        self._emit(JobDone(self._now(), out, duration))
        return RenderResult(out, duration, scenes, list(self.events))

    async def _scenes_pipelined(self, plan: RenderPlan) -> list[SceneArtifacts]:
        try:
            async with asyncio.TaskGroup() as group:
                # Every scene's speech starts now; images queue for the image slot in order.
                audio_tasks = [
                    group.create_task(self._audio(scene), name=f"audio-{scene.number}")
                    for scene in plan.scenes
                ]
                scene_tasks = [
                    group.create_task(self._scene(plan, scene, audio), name=f"scene-{scene.number}")
                    for scene, audio in zip(plan.scenes, audio_tasks, strict=True)
                ]
        except BaseExceptionGroup as group_error:
            raise _first_scene_failure(group_error) from None
        return [task.result() for task in scene_tasks]

    async def _scene(
        self, plan: RenderPlan, scene: ScenePlan, audio_task: asyncio.Task[tuple[Path, float]]
    ) -> SceneArtifacts:
        image, (audio, seconds) = await asyncio.gather(self._image(scene), audio_task)
        return await self._clip(plan, scene, image, audio, seconds)

    async def _scene_sequential(self, plan: RenderPlan, scene: ScenePlan) -> SceneArtifacts:
        image = await self._image(scene)
        audio, seconds = await self._audio(scene)
        return await self._clip(plan, scene, image, audio, seconds)

    # ------------------------------------------------------------ the three stages

    async def _audio(self, scene: ScenePlan) -> tuple[Path, float]:
        key = content_key("audio", provider=self.tts.name, voice=scene.voice,
                          text=scene.narration, speed=scene.speed)  # fmt: skip
        cached = self.cache.lookup("audio", key, ".wav")
        if cached is not None:
            seconds = await self._stage(scene.number, Stage.AUDIO, probe_duration(cached))
            self._scene_event(
                scene.number, Stage.AUDIO, Status.CACHED, path=cached, seconds=seconds
            )
            return cached, seconds
        self._scene_event(scene.number, Stage.AUDIO, Status.STARTED)

        async def make() -> tuple[Path, float]:
            async with self.cache.writing("audio", key, ".wav") as temp:
                await self.tts.synthesize(scene.narration, voice=scene.voice,
                                          speed=scene.speed, out=temp)  # fmt: skip
                seconds = await probe_duration(temp)
            return self.cache.path("audio", key, ".wav"), seconds

        path, seconds = await self._stage(scene.number, Stage.AUDIO, make())
        self._scene_event(scene.number, Stage.AUDIO, Status.DONE, path=path, seconds=seconds)
        return path, seconds

    async def _image(self, scene: ScenePlan) -> Path:
        request = scene.image
        key = content_key("image", provider=self.images.name, **vars(request) | {"scene": 0})
        seed = request.seed
        cached = self.cache.lookup("image", key, ".png")
        if cached is not None:
            self._scene_event(scene.number, Stage.IMAGE, Status.CACHED, path=cached, seed=seed)
            return cached
        self._scene_event(scene.number, Stage.IMAGE, Status.WAITING, seed=seed)

        async def make() -> Path:
            async with self.image_slot:
                self._stop_if_failing()
                self._scene_event(scene.number, Stage.IMAGE, Status.STARTED, seed=seed)
                async with self.cache.writing("image", key, ".png") as temp:
                    await self.images.generate(request, temp)
            return self.cache.path("image", key, ".png")

        path = await self._stage(scene.number, Stage.IMAGE, make())
        self._scene_event(scene.number, Stage.IMAGE, Status.DONE, path=path, seed=seed)
        return path

    async def _clip(
        self, plan: RenderPlan, scene: ScenePlan, image: Path, audio: Path, seconds: float
    ) -> SceneArtifacts:
        spec = ClipSpec(image, audio, seconds, plan.frame, self.settings.video)
        video = self.settings.video
        key = content_key(
            "clip", recipe=CLIP_RECIPE, image=image.name, audio=audio.name, frame=str(plan.frame),
            fps=video.fps, pad=video.pad_seconds, zoom=video.zoom, crf=video.crf,
            preset=video.preset, audio_bitrate=video.audio_bitrate,
        )  # fmt: skip
        done = SceneArtifacts(scene.number, audio, seconds, image,
                              self.cache.path("clip", key, ".mp4"), spec.seconds)  # fmt: skip
        if self.cache.lookup("clip", key, ".mp4") is not None:
            self._scene_event(scene.number, Stage.CLIP, Status.CACHED, path=done.clip,
                              seconds=spec.seconds)  # fmt: skip
            return done
        self._scene_event(scene.number, Stage.CLIP, Status.WAITING)

        async def make() -> None:
            async with self.encoder_slot:
                self._stop_if_failing()
                self._scene_event(scene.number, Stage.CLIP, Status.STARTED)
                async with self.cache.writing("clip", key, ".mp4") as temp:
                    await encode_clip(spec, temp, scene=scene.number)

        await self._stage(scene.number, Stage.CLIP, make())
        self._scene_event(scene.number, Stage.CLIP, Status.DONE, path=done.clip,
                          seconds=spec.seconds)  # fmt: skip
        return done

    def _stop_if_failing(self) -> None:
        if self._failing:
            # The task group is about to cancel this task anyway; stop before doing work.
            raise asyncio.CancelledError

    async def _stage(self, scene: int, stage: Stage, work: Awaitable[T]) -> T:
        """Await one stage of one scene; any failure becomes SceneFailed naming both."""
        try:
            return await work
        except (asyncio.CancelledError, SceneFailed):
            raise
        except Exception as exc:
            if not isinstance(exc, ReelbotError):
                log.exception("scene %d, %s: unexpected error", scene, stage)
            elif getattr(exc, "detail", ""):
                log.error("scene %d, %s: %s\n%s", scene, stage, exc, exc.detail)  # type: ignore[attr-defined]
            self._failing = True
            self._scene_event(scene, stage, Status.FAILED, message=str(exc))
            raise SceneFailed(scene, stage.value, exc) from exc


def _first_scene_failure(group: BaseExceptionGroup) -> BaseException:
    """The failure to report: the lowest-numbered failed scene, else the first error."""
    failures: list[SceneFailed] = []
    others: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        elif isinstance(error, SceneFailed):
            failures.append(error)
        else:
            others.append(error)

    walk(group)
    if failures:
        return min(failures, key=lambda f: f.scene)
    return others[0]


async def render_plan(
    plan: RenderPlan,
    settings: Settings,
    out: Path,
    *,
    on_event: EventSink | None = None,
    sequential: bool = False,
    client_factory: Callable[[], httpx.AsyncClient] = httpx.AsyncClient,
) -> RenderResult:
    """Render with the providers chosen by `settings` (the CLI's entry point)."""
    async with client_factory() as client:
        renderer = Renderer(
            settings,
            tts=make_tts(settings, client),
            images=make_images(settings, client),
            on_event=on_event,
        )
        try:
            return await renderer.render(plan, out, sequential=sequential)
        finally:
            renderer.cache.evict(settings.storage.cache_max_mb * 1024 * 1024)
