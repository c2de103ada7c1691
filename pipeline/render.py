"""The render: every scene's audio starts at once, images go through one shared slot, and
each scene's clip is encoded the moment its image and audio both exist; then the clips are
joined by stream copy.

    script → plan → (audio ∥ image) per scene → clip per scene → join → video

A scene with its own media (`ScenePlan.media`, checked and cached by `pipeline/own_media.py`)
asks for no image: its picture gets the same Ken Burns zoom, and its video clip is looped or
cut to the narration and encoded like every clip (`video.media_clip_argv`), so the join stays a
stream copy. Its image stage reports the picture (a clip: one frame of it, for storyboards
and review) as CACHED, never DONE: DONE is what a paid image reports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import httpx

from .artifact_checks import check_audio, check_clip, check_image_file
from .cache import ArtifactCache, content_key
from .captions import ass_document, cues_from_words, cues_proportional, speech_span, split_phrases
from .config import Settings
from .errors import ImageError, KeyRefused, MediaError, ReelbotError, SceneFailed, StorageError
from .events import (
    EventSink,
    JobDone,
    JobFailed,
    JobStarted,
    ProgressEvent,
    RetryWait,
    SceneEvent,
    Stage,
    Status,
)
from .image_slot import ImageKey, ImageSlot, stop_grace
from .images import ImageProvider, ImageRequest, make_images
from .images.formats import IMAGE_SUFFIXES, image_type_of
from .job_order import OrderedSlots, in_job_order
from .media import probe_duration
from .own_media import MEDIA_KIND, OwnMedia
from .places import os_reason
from .plan import RenderPlan, ScenePlan
from .proc import run_program
from .soundtrack import (
    NarrationPart,
    add_soundtrack,
    make_soundtrack,
    sound_pass_needed,
    soundtrack_identity,
)
from .transitions import Piece, clip_keyframes, join_with_crossfades
from .tts import TTSProvider, close_tts, make_tts
from .tts.base import SharesCPU, WordMark, WordTimedTTS
from .video import (
    ClipSpec,
    clip_frames,
    clip_seconds,
    encode_clip,
    encode_media_clip,
    join_clips,
    poster_argv,
)

__all__ = [
    "RenderResult",
    "Renderer",
    "SceneArtifacts",
    "image_key",
    "images_to_make",
    "render_plan",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
# Bump when the clip recipe changes, so cached clips made the old way are not reused.
CLIP_RECIPE = 3  # 3: the zoom by per-frame crops and one swscale resample (pipeline/zoom.py)
MEDIA_CLIP_RECIPE = 1  # a scene's own video clip (video.media_clip_argv)


@dataclass(frozen=True)
class SceneArtifacts:
    number: int
    audio: Path
    audio_seconds: float
    image: Path
    clip: Path
    clip_seconds: float
    captions: Path | None = None  # the ASS file burned into the clip
    # The scene's own video clip, when its sound is mixed under the narration
    # (`[video] clip_audio = "duck"`, in the sound pass).
    sound: Path | None = None


@dataclass(frozen=True)
class _Speech:
    path: Path
    seconds: float
    words: list[WordMark] | None  # when each word starts, if the provider can tell


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
        image_slot: ImageSlot | None = None,
        encoder_slot: asyncio.Semaphore | None = None,
        label: str = "",
        order: int = 0,
    ) -> None:
        self.settings = settings
        # Names the render in the log ("job 12"), where several may run at once.
        self.label = f"{label}: " if label else ""
        self._stage_started: dict[tuple[int, Stage], float] = {}
        self.tts = tts
        self.images = images
        self.cache = cache or ArtifactCache(settings.storage.data_dir / "cache")
        self._sink = on_event
        # Shared slots may be passed in so several renders in one process share the limits;
        # where renders wait for the same slots, the smaller `order` (the earlier job) goes
        # first (pipeline/job_order.py).
        self.order = order
        self.image_slot = image_slot or ImageSlot.for_settings(settings)
        self.encoder_slot = encoder_slot or OrderedSlots(settings.video.encoder_slots)
        if isinstance(tts, SharesCPU):  # local speech (Piper) takes a slot while it speaks
            tts.cpu_slot = self.encoder_slot
        self.events: list[ProgressEvent] = []
        self._t0 = time.monotonic()
        # Set when a scene has failed: work still waiting for a slot stops instead of
        # spending a paid image request on a render that is already lost.
        self._failing = False
        self._over = False  # the render has ended (its JobDone or JobFailed is told)
        self._finishing = "joining the clips"  # what the post-scene step is doing, for errors
        # Each narration's spoken span (start, end), found once, for captions without word times.
        self._spans: dict[Path, tuple[float, float]] = {}
        # The soundtrack, being made while the pictures are (`_soundtrack_from_speech`).
        self._early_sound: asyncio.Task[tuple[list[NarrationPart], Path]] | None = None

    # ------------------------------------------------------------ events

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _emit(self, event: ProgressEvent) -> None:
        self.events.append(event)
        if isinstance(event, SceneEvent):
            self._log_stage(event)
        if self._sink is not None:
            try:
                self._sink(event)
            except Exception:  # a broken front end must not break the render
                log.exception("progress consumer failed on %s", event)

    def _log_stage(self, event: SceneEvent) -> None:
        """INFO: each stage's start and end (`reelbot -v`), with how long it took."""
        what = "join" if event.stage is Stage.JOIN else f"scene {event.scene}, {event.stage}"
        key = (event.scene, event.stage)
        if event.status is Status.WAITING:
            log.debug("%s%s: waiting for a free slot", self.label, what)
        elif event.status is Status.STARTED:
            self._stage_started[key] = event.t
            log.info("%s%s: started", self.label, what)
        elif event.status is Status.CACHED:
            log.info("%s%s: reused from the cache", self.label, what)
        else:
            start = self._stage_started.pop(key, None)
            took = f" in {event.t - start:.2f} s" if start is not None else ""
            if event.status is Status.DONE:
                log.info("%s%s: done%s", self.label, what, took)
            else:
                log.info("%s%s: failed%s: %s", self.label, what, took, event.message)

    def _scene_event(
        self,
        scene: int,
        stage: Stage,
        status: Status,
        *,
        path: Path | None = None,
        message: str = "",
        seconds: float | None = None,
        seed: int | None = None,
    ) -> None:
        self._emit(SceneEvent(self._now(), scene, stage, status, path, message, seconds, seed))

    # ------------------------------------------------------------ the whole render

    async def render(
        self, plan: RenderPlan, out: Path, *, sequential: bool = False, join: bool = True
    ) -> RenderResult:
        """Render `plan` to `out`. `sequential` runs one scene after another, image → audio →
        clip (the old model, kept for benchmarks). `join=False` stops once every scene's clip
        exists (a front end reviewing the scenes first): no join, no JobDone, `out` is not
        written and the result's `duration` is the clips' total."""
        self._t0 = time.monotonic()
        self.events = []
        self._stage_started = {}
        self._failing = False
        self._over = False
        self._finishing = "joining the clips"
        self._spans = {}
        self._early_sound = None
        self._emit(JobStarted(0.0, plan.title, len(plan.scenes)))
        try:
            with in_job_order(self.order):  # its tasks and slot requests are served in job order
                return await self._render(plan, out, sequential=sequential, join=join)
        except asyncio.CancelledError:
            self._emit(JobFailed(self._now(), "the render was cancelled"))
            raise
        except SceneFailed as exc:
            self._emit(JobFailed(self._now(), str(exc), exc.scene, Stage(exc.stage)))
            raise
        except ReelbotError as exc:
            self._emit(JobFailed(self._now(), f"{self._finishing}: {exc}", None, Stage.JOIN))
            raise
        except OSError as exc:  # writing the list of clips, or renaming the video into place
            error = StorageError(f"{self._finishing}: the video could not be written: "
                                 f"{os_reason(exc)}")  # fmt: skip
            self._emit(JobFailed(self._now(), str(error), None, Stage.JOIN))
            raise error from exc
        finally:
            self._over = True  # what its images still in flight do is no longer its news

    async def _render(
        self, plan: RenderPlan, out: Path, *, sequential: bool, join: bool
    ) -> RenderResult:
        if sequential:
            scenes = [await self._scene_sequential(plan, s) for s in plan.scenes]
        else:
            try:
                scenes = await self._scenes_pipelined(plan)
            except BaseException:
                await self._drop_early_sound()
                raise
        if not join:
            # Made meanwhile for the join that follows the review: cached, or its error told.
            if self._early_sound is not None:
                self._finishing = "mixing the sound"
                await self._early_sound
            seconds = sum(s.clip_seconds for s in scenes)
            return RenderResult(out, seconds, scenes, list(self.events))
        self._scene_event(0, Stage.JOIN, Status.STARTED)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Names of this render's own: another render may write the same output meanwhile.
        unique = uuid.uuid4().hex[:8]
        temp = out.with_name(f".{out.stem}.{unique}.part.mp4")
        joined = out.with_name(f".{out.stem}.{unique}.join.mp4")
        try:
            await self._join_and_mix(plan, scenes, joined, temp)
            temp.replace(out)
        finally:
            await self._drop_early_sound()
            temp.unlink(missing_ok=True)
            joined.unlink(missing_ok=True)
        duration = await probe_duration(out)
        self._scene_event(0, Stage.JOIN, Status.DONE, path=out, seconds=duration)
        self._emit(JobDone(self._now(), out, duration))
        return RenderResult(out, duration, scenes, list(self.events))

    async def _join_and_mix(
        self, plan: RenderPlan, scenes: list[SceneArtifacts], joined: Path, out: Path
    ) -> None:
        """Join the clips by stream copy; then, if there is music or loudness to set, the sound
        pass re-encodes the audio (only) from the scenes' WAVs into `out`."""
        video, sound = self.settings.video, self.settings.sound
        crossfade = video.crossfade > 0 and len(scenes) > 1
        clip_sound = any(s.sound is not None for s in scenes)
        mix = sound_pass_needed(sound, music=plan.music, crossfade=crossfade,
                                clip_sound=clip_sound)  # fmt: skip
        fades: list[float] = []
        if crossfade:  # the clips are cut at their keyframes; only the seams are encoded
            work = joined.with_name(joined.stem + ".seams")
            pieces = [Piece(s.clip, clip_frames(s.audio_seconds, video)) for s in scenes]
            try:
                fades = await join_with_crossfades(pieces, joined, config=video, title=plan.title,
                                                   work=work, slot=self.encoder_slot)  # fmt: skip
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            await join_clips([s.clip for s in scenes], joined if mix else out, title=plan.title,
                             timeout=video.timeout)  # fmt: skip
        if not mix:
            return
        self._finishing = "mixing the sound"
        parts = [NarrationPart(s.audio.resolve(), s.clip_seconds,
                               s.sound.resolve() if s.sound is not None else None)
                 for s in scenes]  # fmt: skip
        made = await self._early_sound if self._early_sound is not None else None
        if made is not None and made[0] == parts:  # (made only where there are no crossfades)
            track = made[1]
        else:
            track = await self._soundtrack(plan, parts, fades)
        self._finishing = "adding the sound"
        await add_soundtrack(joined, track, out, timeout=video.timeout)

    async def _soundtrack(
        self, plan: RenderPlan, parts: list[NarrationPart], fades: list[float]
    ) -> Path:
        """The finished soundtrack, from the cache when the narration, the scenes' lengths and
        the music are those of an earlier render (a picture regenerated, a caption restyled):
        its three passes over the whole narration are then skipped."""
        video, sound = self.settings.video, self.settings.sound
        key = content_key("soundtrack", **soundtrack_identity(
            parts, config=sound, music=plan.music, crossfades=fades,
            audio_bitrate=video.audio_bitrate))  # fmt: skip
        if (cached := self.cache.lookup("soundtrack", key, ".m4a")) is not None:
            return cached
        async with self.cache.writing("soundtrack", key, ".m4a") as temp:
            await make_soundtrack(temp, parts, config=sound, music=plan.music, crossfades=fades,
                                  audio_bitrate=video.audio_bitrate,
                                  timeout=video.timeout)  # fmt: skip
        return self.cache.path("soundtrack", key, ".m4a")

    def _sound_early(self, plan: RenderPlan) -> bool:
        """Whether the soundtrack can be made as soon as every narration exists, while the
        pictures and clips are still being made: a sound pass is needed, and no crossfade
        (whose lengths the join decides)."""
        video = self.settings.video
        crossfade = video.crossfade > 0 and len(plan.scenes) > 1
        clip_sound = any(self._scene_sound(scene) is not None for scene in plan.scenes)
        needed = sound_pass_needed(self.settings.sound, music=plan.music, crossfade=False,
                                   clip_sound=clip_sound)  # fmt: skip
        return needed and not crossfade

    async def _soundtrack_from_speech(
        self, plan: RenderPlan, speech: list[asyncio.Task[_Speech]]
    ) -> tuple[list[NarrationPart], Path]:
        """The soundtrack, made (or found) as soon as every narration exists: it needs only
        the narrations and the clips' lengths, which follow from them. Off the critical path:
        the join then only adds it (unless a scene turned out otherwise)."""
        video = self.settings.video
        done = await asyncio.gather(*speech)
        parts = []
        for scene, said in zip(plan.scenes, done, strict=True):
            sound = self._scene_sound(scene)
            parts.append(NarrationPart(said.path.resolve(), clip_seconds(said.seconds, video),
                                       sound.resolve() if sound is not None else None))  # fmt: skip
        return parts, await self._soundtrack(plan, parts, [])

    async def _drop_early_sound(self) -> None:
        """Stop the early soundtrack if it is still being made (its ffmpeg is killed); its
        failure, if it failed, is not this render's news any more."""
        task, self._early_sound = self._early_sound, None
        if task is None:
            return
        task.cancel()  # (nothing, if it is done)
        await asyncio.wait([task])  # its ffmpeg reaped; a cancel of this render still comes
        if not task.cancelled():
            task.exception()  # looked at: never "a task exception was never retrieved"

    async def _scenes_pipelined(self, plan: RenderPlan) -> list[SceneArtifacts]:
        try:
            async with asyncio.TaskGroup() as group:
                # Every scene's speech starts now; images queue for the image slot in order.
                audio_tasks = [
                    group.create_task(self._audio(scene), name=f"audio-{scene.number}")
                    for scene in plan.scenes
                ]
                if self._sound_early(plan):  # outside the group: a failure is told at the join
                    self._early_sound = asyncio.create_task(
                        self._soundtrack_from_speech(plan, audio_tasks), name="soundtrack"
                    )
                scene_tasks = [
                    group.create_task(self._scene(plan, scene, audio), name=f"scene-{scene.number}")
                    for scene, audio in zip(plan.scenes, audio_tasks, strict=True)
                ]
        except BaseExceptionGroup as group_error:
            raise _first_scene_failure(group_error) from None
        return [task.result() for task in scene_tasks]

    async def _scene(
        self, plan: RenderPlan, scene: ScenePlan, audio_task: asyncio.Task[_Speech]
    ) -> SceneArtifacts:
        # A picture still to be asked for takes seconds: what the captions need from the
        # narration is found meanwhile, off the clip's critical path. (Not for a cached
        # picture: its clip is most likely cached too, and needs nothing.)
        early = plan.captions and self._image_to_make(scene)

        async def speech_ready() -> _Speech:
            speech = await audio_task
            if early and speech.words is None:  # the captions' work: a failure is the clip's
                await self._stage(scene.number, Stage.CLIP, self._span(speech))
            return speech

        image, speech = await asyncio.gather(self._image(scene), speech_ready())
        return await self._clip(plan, scene, image, speech)

    def _image_to_make(self, scene: ScenePlan) -> bool:
        """Whether the scene's picture must be asked for (it is not in the cache)."""
        return scene.media is None and self._cached_image(scene.image)[1] is None

    def _cached_image(self, request: ImageRequest) -> tuple[str, Path | None]:
        """The picture's cache key, and the picture if the cache has it (not checked)."""
        key = image_key(self.images.name, request)
        return key, self.cache.lookup("image", key, IMAGE_SUFFIXES)

    async def _span(self, speech: _Speech) -> tuple[float, float]:
        """The narration's spoken span (start, end), found once per render."""
        span = self._spans.get(speech.path)
        if span is None:
            span = self._spans[speech.path] = await speech_span(speech.path, speech.seconds)
        return span

    async def _scene_sequential(self, plan: RenderPlan, scene: ScenePlan) -> SceneArtifacts:
        image = await self._image(scene)
        speech = await self._audio(scene)
        return await self._clip(plan, scene, image, speech)

    # ------------------------------------------------------------ the three stages

    async def _audio(self, scene: ScenePlan) -> _Speech:
        extra = await self._stage(scene.number, Stage.AUDIO, self._voice_file(scene.voice))
        key = content_key("audio", provider=self.tts.name, voice=scene.voice,
                          text=scene.narration, speed=scene.speed, **extra)  # fmt: skip
        timed = isinstance(self.tts, WordTimedTTS)
        cached = self.cache.lookup("audio", key, ".wav")
        # A provider that reports word timings stores them beside the audio (for captions).
        words_file = self.cache.lookup("words", key, ".json") if timed else None
        seconds = None
        if cached is not None and (words_file is not None or not timed):
            seconds = await self._reusable(cached, self._check_audio(cached, scene))
        if cached is not None and seconds is not None:

            async def load(audio: Path, seconds: float) -> _Speech:
                words = _read_words(words_file) if words_file is not None else None
                return _Speech(audio, seconds, words)

            speech = await self._stage(scene.number, Stage.AUDIO, load(cached, seconds))
            self._scene_event(
                scene.number, Stage.AUDIO, Status.CACHED, path=cached, seconds=speech.seconds
            )
            return speech
        self._scene_event(scene.number, Stage.AUDIO, Status.STARTED)

        async def make() -> _Speech:
            words: list[WordMark] | None = None
            async with self.cache.writing("audio", key, ".wav") as temp:
                if isinstance(self.tts, WordTimedTTS):
                    words = await self.tts.synthesize_timed(
                        scene.narration, voice=scene.voice, speed=scene.speed, out=temp
                    )
                else:
                    await self.tts.synthesize(scene.narration, voice=scene.voice,
                                              speed=scene.speed, out=temp)  # fmt: skip
                seconds = await self._check_audio(temp, scene)
            if timed:
                async with self.cache.writing("words", key, ".json") as temp:
                    temp.write_text(_dump_words(words), encoding="utf-8")
            return _Speech(self.cache.path("audio", key, ".wav"), seconds, words)

        speech = await self._stage(scene.number, Stage.AUDIO, make())
        self._scene_event(
            scene.number, Stage.AUDIO, Status.DONE, path=speech.path, seconds=speech.seconds
        )
        return speech

    async def _voice_file(self, voice: str) -> dict[str, str]:
        """A voice that is a file (Piper) is keyed by the file it names now, not by its name."""
        identity = getattr(self.tts, "voice_identity", None)
        return {"voice_file": identity(voice)} if identity is not None else {}

    async def _image(self, scene: ScenePlan) -> Path:
        if scene.media is not None:
            return await self._own_image(scene.number, scene.media)
        request = scene.image
        key, cached = self._cached_image(request)
        seed = request.seed
        limits = self.settings.limits
        if cached is not None:
            picture = await self._reusable(cached, check_image_file(cached, limits, cached=True))
            cached = cached if picture is not None else None
        if cached is not None:
            self._scene_event(scene.number, Stage.IMAGE, Status.CACHED, path=cached, seed=seed)
            return cached
        self._scene_event(scene.number, Stage.IMAGE, Status.WAITING, seed=seed)

        def waiting(seconds: float, reason: str) -> None:
            self._emit(RetryWait(self._now(), scene.number, Stage.IMAGE, seconds, reason))

        async def make(api_key: ImageKey) -> tuple[Path, bool]:
            """The image and whether it was made now, with the slot's key. It runs in the
            image slot as a task of its own: if this render is cancelled, the attempt in
            flight still finishes."""
            self._stop_if_failing()
            # Made while this one waited: a cancelled render's image, finished in the slot.
            if (made := self._cached_image(request)[1]) is not None:
                done(made, Status.CACHED)
                return made, False
            self._scene_event(scene.number, Stage.IMAGE, Status.STARTED, seed=seed)
            try:
                async with self.cache.writing("image", key, _image_suffix) as temp:
                    await self.images.generate(request, temp, on_wait=waiting,
                                               key=api_key)  # fmt: skip
                    if not getattr(self.images, "checks_pictures", False):
                        await check_image_file(temp, limits)  # else checked before written
            except KeyRefused:
                raise  # the slot sends it again with another key
            except Exception:
                # Known at once, before the slot is handed on: the next image waiting for it
                # is not asked for (this render is lost).
                self._failing = True
                raise
            made = self._cached_image(request)[1]
            if made is None:  # removed between the write and now: say so, do not guess
                raise ImageError(f"scene {scene.number}'s image left the cache as it was made")
            done(made, Status.DONE)
            return made, True

        def done(path: Path, status: Status) -> None:
            """Told from the slot's task, before it hands the slot on: the next image's start
            never comes before this one's end. Not told once the render is over."""
            if not self._over:
                self._scene_event(scene.number, Stage.IMAGE, status, path=path, seed=seed)

        work = self.image_slot.run(make, name=f"{self.label}scene {scene.number}'s image",
                                   order=self.order)  # fmt: skip
        path, _ = await self._stage(scene.number, Stage.IMAGE, work)
        return path

    async def _own_image(self, number: int, media: OwnMedia) -> Path:
        """A scene's own picture, or one frame of its own clip: never a request."""

        async def poster() -> Path:
            at = min(1.0, (media.seconds or 0.0) / 3)
            key = content_key("poster", media=media.path.name, at=at)
            found = self.cache.lookup("poster", key, ".png")
            if found is not None:
                return found
            async with self.cache.writing("poster", key, ".png") as temp:
                await run_program(poster_argv(media.path, temp, at=at),
                                  what=f"ffmpeg (a frame of scene {number}'s clip)",
                                  timeout=self.settings.video.timeout)  # fmt: skip
            return self.cache.path("poster", key, ".png")

        async def own() -> Path:
            # Pinned while the render runs; looked up, it is also marked as just used.
            if self.cache.lookup(MEDIA_KIND, media.path.stem, media.path.suffix) is None:
                raise MediaError(f"the scene's own media {media.name!r} left the cache "
                                 "before it was used")  # fmt: skip
            return media.path if media.kind == "picture" else await poster()

        path = await self._stage(number, Stage.IMAGE, own())
        self._scene_event(number, Stage.IMAGE, Status.CACHED, path=path)
        return path

    def _scene_sound(self, scene: ScenePlan) -> Path | None:
        """The scene's own video clip, when its sound goes under the narration."""
        media = scene.media
        if media is None or media.kind != "video" or not media.sound:
            return None
        return media.path if self.settings.video.clip_audio == "duck" else None

    async def _clip(
        self, plan: RenderPlan, scene: ScenePlan, image: Path, speech: _Speech
    ) -> SceneArtifacts:
        audio, seconds = speech.path, speech.seconds
        video = self.settings.video
        keyframes = clip_keyframes(video, clip_frames(seconds, video))  # crossfade cuts
        spec = ClipSpec(image, audio, seconds, plan.frame, video, keyframes=keyframes)
        captions = None
        if plan.captions:  # what the captions are made from: the ASS follows from these
            timing = "words" if speech.words is not None else "proportional"
            captions = {"style": self.settings.captions.model_dump(mode="json"),
                        "text": scene.narration, "timing": timing}  # fmt: skip
        own_clip = scene.media if scene.media is not None and scene.media.kind == "video" else None
        picture: dict[str, object] = {"recipe": CLIP_RECIPE, "image": image.name,
                                      "zoom": video.zoom}  # fmt: skip
        if own_clip is not None:
            picture = {"recipe": MEDIA_CLIP_RECIPE, "media": own_clip.path.name}
        key = content_key(
            "clip", **picture, audio=audio.name, frame=str(plan.frame), fps=video.fps,
            pad=video.pad_seconds, crf=video.crf, preset=video.preset,
            audio_bitrate=video.audio_bitrate, captions=captions, keyframes=keyframes,
        )  # fmt: skip
        done = SceneArtifacts(scene.number, audio, seconds, image,
                              self.cache.path("clip", key, ".mp4"), spec.seconds,
                              sound=self._scene_sound(scene))  # fmt: skip
        if self.cache.lookup("clip", key, ".mp4") is not None:
            if captions is not None:
                done = replace(done, captions=self.cache.lookup("captions", key, ".ass"))
            self._scene_event(scene.number, Stage.CLIP, Status.CACHED, path=done.clip,
                              seconds=spec.seconds)  # fmt: skip
            return done
        self._scene_event(scene.number, Stage.CLIP, Status.WAITING)

        async def make() -> Path | None:
            ass = None
            if captions is not None:
                ass = await self._captions(plan, scene, speech, key)
            async with self.encoder_slot:
                self._stop_if_failing()
                self._scene_event(scene.number, Stage.CLIP, Status.STARTED)
                async with self.cache.writing("clip", key, ".mp4") as temp:
                    if own_clip is not None:
                        await encode_media_clip(replace(spec, captions=ass), own_clip.path,
                                                temp, scene=scene.number)  # fmt: skip
                    else:
                        await encode_clip(replace(spec, captions=ass), temp, scene=scene.number)
                    await check_clip(temp, seconds=spec.seconds, fps=video.fps)
            return ass

        done = replace(done, captions=await self._stage(scene.number, Stage.CLIP, make()))
        self._scene_event(scene.number, Stage.CLIP, Status.DONE, path=done.clip,
                          seconds=spec.seconds)  # fmt: skip
        return done

    async def _captions(self, plan: RenderPlan, scene: ScenePlan, speech: _Speech,
                        key: str) -> Path:  # fmt: skip
        """Write the scene's ASS captions (named by the clip's key: no user text in the path)."""
        config = self.settings.captions
        phrases = split_phrases(scene.narration, max_words=config.max_words,
                                max_chars=config.max_chars)  # fmt: skip
        if speech.words is not None:
            cues = cues_from_words(phrases, speech.words, speech.seconds)
        else:
            start, end = await self._span(speech)
            cues = cues_proportional(phrases, start, end)
        async with self.cache.writing("captions", key, ".ass") as temp:
            temp.write_text(ass_document(cues, config, plan.frame), encoding="utf-8")
        return self.cache.path("captions", key, ".ass")

    async def _check_audio(self, path: Path, scene: ScenePlan) -> float:
        return await check_audio(path, text=scene.narration, speed=scene.speed,
                                 limits=self.settings.limits)  # fmt: skip

    async def _reusable(self, path: Path, check: Awaitable[U]) -> U | None:
        """The check's answer for a cached artifact; None if it fails, and the artifact is
        removed to be made again (a cache written before these checks may hold a bad one)."""
        try:
            return await check
        except ReelbotError as exc:
            log.warning("the cached %s is refused (%s); making it again", path.name, exc)
            path.unlink(missing_ok=True)
            return None

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
            if isinstance(exc, OSError):  # the cache's folder: full, read-only, gone
                log.debug("scene %d, %s: cannot write", scene, stage, exc_info=True)
                exc = StorageError(f"the data folder cannot be written: {os_reason(exc)}")
            if not isinstance(exc, ReelbotError):
                log.exception("scene %d, %s: unexpected error", scene, stage)
            elif isinstance(exc, MediaError) and exc.detail:
                log.error("scene %d, %s: %s\n%s", scene, stage, exc, exc.detail)
            self._failing = True
            self._scene_event(scene, stage, Status.FAILED, message=str(exc))
            raise SceneFailed(scene, stage.value, exc) from exc


def _image_suffix(made: Path) -> str:
    """A picture is named for what its bytes are (PNG, JPEG, WebP), never an assumed type."""
    kind = image_type_of(made)
    if kind is None:
        raise ImageError("the image provider wrote something that is not a PNG, JPEG or WebP",
                         retryable=True)  # fmt: skip
    return kind.suffix


def _dump_words(words: list[WordMark] | None) -> str:
    if words is None:
        return "null"
    return json.dumps([[w.start, w.length, round(w.seconds, 6)] for w in words])


def _read_words(path: Path) -> list[WordMark] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data is None:
            return None
        return [WordMark(int(a), int(b), float(c)) for a, b, c in data]
    except (OSError, ValueError, TypeError) as exc:
        raise MediaError(f"the cached word timings {path.name} cannot be read: {exc}") from None


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


def image_key(provider: str, request: ImageRequest) -> str:
    """The cache key of the image `provider` makes for `request` (the scene number is not
    part of it: the same prompt and seed in another scene is the same image)."""
    return content_key("image", provider=provider, **vars(request) | {"scene": 0})


def images_to_make(plan: RenderPlan, cache: ArtifactCache, provider: str) -> list[int]:
    """The scenes of `plan` whose image is not in the cache: each will be one image request
    (a paid one, with a paid provider). A scene with its own media makes none. Reads the cache
    without touching it."""
    return [
        scene.number
        for scene in plan.scenes
        if scene.media is None
        and not any(
            _exists(cache.path("image", image_key(provider, scene.image), suffix))
            for suffix in IMAGE_SUFFIXES
        )
    ]


def _exists(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


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
        tts = make_tts(settings, client)
        renderer = Renderer(settings, tts=tts, images=make_images(settings, client),
                            on_event=on_event)  # fmt: skip
        try:
            return await renderer.render(plan, out, sequential=sequential)
        finally:
            # An image still in flight (a cancelled or failed render's) is paid for: let it
            # land in the cache before the client closes, within a bound.
            await renderer.image_slot.drain(stop_grace(settings.images))
            await close_tts(tts)
            renderer.cache.evict(settings.storage.cache_max_mb * 1024 * 1024)
