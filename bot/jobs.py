"""The render queue: jobs persisted in the store, run a few at a time, resumed after a restart.

Modelled on arq's `run_job`: each job is its own task under `[queue] job_timeout`, removed from
the task table in `finally`; a run past the timeout is stopped and fails saying so; a
cancellation is sorted by cause (the user's cancel → `cancelled`; shutdown → back to `queued`,
to be resumed); the final state write is shielded. A job waiting for review has no task: it is
not running, and its wait does not count towards the timeout.

The runner tells a front end about a job through its `JobObserver` (`bot/presenter.py` for
Discord): queued (submitted, or found in the queue at start), started, each progress event,
and the outcome. It never imports the front end.

The plan a run renders has one source, the store: the job's script and options, with each
scene's seed and prompts as its scene rows hold them (`plan_for`). At submit the same builder
(`plan`) gives the title, the scene rows to write and the paid images to admit.

Scene review: a `review` job whose scenes are not all approved is rendered without the join
(a review round) and waits in `review`; approving the last scene queues it again, and that run
finds every artifact in the cache, joins and delivers. Regenerating or editing a scene gives
it a new version and queues the job again: only that scene's image and clip are made.

Work enters the queue only through `submit` (a new job) and `revise_scene` (a scene made
again), and both go through `bot/admission.py`, which checks every limit and records the
admission in one store transaction. The runner also keeps `[storage] keep_days`
(`bot/retention.py`): a sweep at start and every hour, and `forget` for one job.

A new way to put work in the queue (a Retry button, a draft rendered) calls `submit`; a new
state of a job that a front end must show is a new `JobObserver` method.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx

from pipeline.aspect import Aspect
from pipeline.cache import ArtifactCache
from pipeline.errors import ReelbotError, SceneFailed
from pipeline.estimate import Estimator, Shape, measure, shape_of
from pipeline.events import JobFailed, JobStarted, ProgressEvent, SceneEvent, Status, event_to_dict
from pipeline.image_slot import ImageSlot, stop_grace
from pipeline.images import make_images
from pipeline.job_order import OrderedSlots
from pipeline.media import probe_duration
from pipeline.own_media import OwnMedia
from pipeline.plan import RenderPlan, ScenePlan, plan_render
from pipeline.render import Renderer, RenderResult, images_to_make
from pipeline.script import Script, parse_script
from pipeline.tts import close_tts, make_tts

from .admission import Admission, JobRequest
from .config import BotSettings
from .errors import JobNotFound, JobTimedOut, ReviewRefused
from .estimate import StageTimings
from .outputs import job_video, remove_outputs
from .presets import with_style
from .retention import ForgetHook, ForgottenJob, Retention
from .store import Job, JobOptions, JobState, NewScene, SceneRecord, Store, StoredMedia
from .usage import Clock, ImageMeter

if TYPE_CHECKING:
    from .remote.renders import RemoteRenders

__all__ = [
    "Approval",
    "JobObserver",
    "JobRunner",
    "QueueEntry",
    "ReviewObserver",
    "TimedObserver",
    "fresh_seed",
    "plan_job",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Approval:
    approved: int  # scenes of the job approved now
    total: int
    queued: bool  # this approval completed the review: the job is queued to be joined


@dataclass(frozen=True)
class QueueEntry:
    job: Job
    position: int  # 0 = running, 1 = next, ...
    estimate: float  # seconds until it is finished
    starts_in: float = 0.0  # seconds until it starts (0: running)


class JobObserver(Protocol):
    """A front end's view of one job (the Discord progress message, thread and delivery)."""

    def queued(self, job: Job) -> None:
        """The job waits in the queue: just submitted, or found there at start."""
        ...

    async def started(self, job: Job) -> None: ...

    def event(self, event: ProgressEvent) -> None: ...

    async def finished(self, job: Job, result: RenderResult) -> bool:
        """The video is made: deliver it. True when it reached the requester: the runner
        then removes the job's output file (its clips stay in the cache, so a revision joins
        them again); False keeps the file (too big to post, or the upload failed)."""
        ...

    async def failed(self, job: Job, reason: str) -> None: ...

    async def cancelled(self, job: Job, by: int | None) -> None:
        """The job was stopped at someone's request (`by`; None: it is being forgotten)."""
        ...


@runtime_checkable
class ReviewObserver(JobObserver, Protocol):
    """A front end that shows a job's scenes for review."""

    async def reviewing(self, job: Job) -> None:
        """A review round is over: every scene exists and the job waits for approvals."""
        ...


@runtime_checkable
class TimedObserver(JobObserver, Protocol):
    """A front end that shows times: the place of a queued job, the time a running one has
    left (`pipeline/estimate.py`, from this bot's measured stage speeds)."""

    def place(self, entry: QueueEntry) -> None:
        """The job's place in the queue changed (or is told for the first time)."""
        ...

    def estimate(self, remaining: float) -> None:
        """Seconds the run has left, as of the event that follows (which draws it)."""
        ...


class JobRunner:
    def __init__(
        self,
        store: Store,
        settings: BotSettings,
        client: httpx.AsyncClient,
        *,
        observer_for: Callable[[Job], JobObserver],
        on_forgotten: ForgetHook | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        self.observer_for = observer_for
        self.clock = clock
        self.admission = Admission(store, settings.queue, settings.rate_limit, clock=clock)
        self.retention = Retention(
            store,
            data_dir=settings.storage.data_dir,
            keep_days=settings.storage.keep_days,
            keep_usage=settings.rate_limit.window,
            clock=clock,
            on_forgotten=on_forgotten,
        )
        self._sweeper: asyncio.Task[None] | None = None
        self.cache = ArtifactCache(settings.storage.data_dir / "cache")
        self.outputs = settings.storage.data_dir / "outputs"
        # One image slot (per key) and one encoder pool for the whole process, shared by every
        # render; work waiting for them is served in job order (the earlier job first).
        self.image_slot = ImageSlot.for_settings(settings)
        self.encoder_slot: asyncio.Semaphore = OrderedSlots(settings.video.encoder_slots)
        # One speech provider for the whole process: Piper loads each voice once, not per job.
        self.tts = make_tts(settings, client)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._cancelled_by: dict[int, int | None] = {}  # running jobs a person stopped
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False
        # Time estimates: the measured stage speeds, each running job's estimator (and when
        # its render started), each queued job's shape, and the places last told.
        self.timings = StageTimings(store, samples=settings.queue.timing_samples)
        self._estimators: dict[int, tuple[Estimator, float]] = {}
        self._shapes: dict[int, Shape] = {}
        self._places: dict[int, int] = {}
        # `[queue] backend = "arq"`: `reelbot worker` processes render; this process hands
        # them each run and follows it (bot/remote/).
        self.remote: RemoteRenders | None = None
        if settings.queue.backend == "arq":
            from .remote.renders import RemoteRenders

            self.remote = RemoteRenders(settings, store)
        self._rendering: set[int] = set()  # jobs a worker has started (backend "arq")

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Resume: a job left `running` by a crash goes back to the queue, in order, and every
        queued job is shown queued again at once (not "paused")."""
        if self.remote is not None:
            await self.remote.open()  # ReelbotError if Redis cannot be reached
        for job in await self.store.jobs_in([JobState.RUNNING]):
            await self.store.set_state(job.id, JobState.QUEUED)
            log.info("job %d was interrupted; resuming it", job.id)
        for job in await self.store.jobs_in([JobState.QUEUED]):
            self.observer_for(job).queued(job)
        for job in await self.store.jobs_in([JobState.QUEUED, JobState.REVIEW]):
            await self.pin_media(job)  # a pin made before a crash holds; this adds to it
        self._dispatcher = asyncio.create_task(self._dispatch(), name="job-dispatcher")
        self._wake.set()
        # keep_days: now (a bot that was off for a while catches up), then every hour.
        self._sweeper = asyncio.create_task(self.retention.run(), name="keep-days")

    async def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, stop the running ones (they stay queued for the next start), and
        wait a bounded time for the images they had in flight."""
        self._closing = True
        for task in (self._dispatcher, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel(msg="shutdown")
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        # An image in flight is paid for: it finishes in the background and lands in the
        # cache, so the resumed job does not ask for it again (a bounded wait).
        await self.image_slot.drain(stop_grace(self.settings.images))
        await close_tts(self.tts)
        if self.remote is not None:
            await self.remote.close()

    # ------------------------------------------------------------ requests

    def check(self, request: JobRequest) -> Script:
        """Read the request's script as its job will (ScriptError if it cannot be rendered).
        A front end may refuse a bad script this way before it fetches anything else (the
        music), then hand the script to `submit`, so that it is read once."""
        return parse_script(request.script, filename=request.filename,
                            limits=self.settings.limits)  # fmt: skip

    async def submit(self, request: JobRequest, script: Script | None = None) -> Job:
        """The one way a new job enters the queue (/render with a file, the paste form, and
        any later way in): read the script (unless `check` did), then admit it
        (`bot/admission.py`) and show it queued. Raises ScriptError, or an AdmissionRefused
        naming the limit."""
        plan = self.plan(self.check(request) if script is None else script, request.options)
        job_id = await self.admission.admit_render(
            request,
            title=plan.title,
            scenes=[
                NewScene(s.number, s.image.seed, s.image.prompt, s.image.negative_prompt)
                for s in plan.scenes
            ],
            images=self.paid_images(plan),
        )
        job = await self.store.job(job_id)
        await self.pin_media(job)
        self.observer_for(job).queued(job)  # shown before the runner may take it
        self._wake.set()
        return job

    async def pin_media(self, job: Job) -> None:
        """Keep the job's own media (uploaded with it, or for one of its scenes) in the cache
        while it is queued, running or in review: no eviction removes it (`_finish` unpins)."""
        paths = [Path(m.path) for m in job.options.media.values()]
        for record in await self.store.scenes(job.id):
            if (own := record.own_media) is not None:
                paths.append(Path(own.path))
        if paths:
            await asyncio.to_thread(self.cache.pin, _pin_owner(job.id), paths)

    def paid_images(self, plan: RenderPlan) -> int:
        """How many paid image requests rendering `plan` would make now (none with the
        offline cards; none for an image already in the cache)."""
        provider = self.settings.image_provider
        if provider == "card":
            return 0
        return len(images_to_make(plan, self.cache, provider))

    async def cancel(self, job_id: int, *, by: int | None = None) -> Job:
        """Stop a job that is not over: a running one is cancelled (its processes killed), a
        queued one or one waiting for review is marked cancelled. Its observer is told either
        way, with who asked (`by`; None: the job is being forgotten)."""
        job = await self.store.job(job_id)
        if not job.state.active:
            raise ReelbotError(f"job {job_id} is already {job.state.value}")
        task = self._running.get(job_id)
        if task is not None:
            self._cancelled_by[job_id] = by
            task.cancel(msg="cancelled by user")
            await asyncio.wait([task])
        else:
            await self.store.set_state(job_id, JobState.CANCELLED, error="cancelled")
            self.cache.unpin(_pin_owner(job_id))
            await self.admission.settle(job_id, admitted_by=self.clock())
            cancelled = await self.store.job(job_id)
            await _quietly(self.observer_for(cancelled).cancelled(cancelled, by))
            self._wake.set()  # the jobs behind it move up
        return await self.store.job(job_id)

    async def retry(self, job_id: int) -> Job:
        """Queue a failed job again (a Retry button); the caller shows that, then calls
        `wake()`. Its next run finds the scenes already made in the cache and makes only the
        rest. Raises ReelbotError if it is not failed, or an AdmissionRefused naming the limit
        (`bot/admission.py`)."""
        job = await self.store.job(job_id)
        if job.state is not JobState.FAILED:
            raise ReelbotError(f"job #{job_id} is {job.state.value}: only a failed job is retried")
        images = self.paid_images(await self.plan_for(job))
        if not await self.admission.admit_retry(job, images=images):
            job = await self.store.job(job_id)
            raise ReelbotError(f"job #{job_id} is {job.state.value} now: nothing to retry")
        log.info("job %d: retrying (%d new image(s) to make)", job_id, images)
        return await self.store.job(job_id)

    async def finished_video(self, job: Job, work: Path) -> tuple[Path, float]:
        """A finished job's video and its duration: the file kept in `outputs/` (one too big
        to post), else made again in `work` from the cache: every scene's clip is there, so
        this joins them by stream copy and mixes the sound as the render did, and pays for
        nothing. Raises ReelbotError if its scenes are no longer all in the cache."""
        kept = job_video(self.outputs, job.id)
        if job.output and kept.is_file():
            return kept, await probe_duration(kept)
        records = await self.store.scenes(job.id)
        plan = await self.plan_for(job, records)
        if self.paid_images(plan):
            raise ReelbotError(
                f"the scenes of job #{job.id} are no longer kept (the cache removed them to stay "
                "under its size cap): render the script again for a new video"
            )
        root = self.cache.root.resolve()
        made = [Path(p).resolve() for r in records for p in (r.audio, r.image, r.clip) if p]
        out = work / f"job-{job.id}.mp4"
        renderer = self.renderer(lambda event: None, label=f"job {job.id} copy")
        with self.cache.pinning() as pin:  # no eviction meanwhile (another job may end)
            pin.add(*(p for p in made if p.is_file() and p.is_relative_to(root)))
            result = await renderer.render(plan, out)
        return result.output, result.duration

    async def queue(self) -> list[QueueEntry]:
        """Active jobs in the order they will finish, with an estimate for each: a running
        job's time left, then each queued job's length from its plan and the measured stage
        speeds, on the render slots in queue order."""
        jobs = await self.store.jobs_in([JobState.RUNNING, JobState.QUEUED])
        # A job just taken (its task made, its state not yet written) is running too; with
        # `backend = "arq"`, a job handed to the workers is running once a worker started it.
        if self.remote is None:
            running = {j.id for j in jobs if j.state is JobState.RUNNING} | set(self._running)
        else:
            running = {j.id for j in jobs if j.state is JobState.RUNNING} & self._rendering
        jobs.sort(key=lambda j: (j.id not in running, j.id))
        slots = self.settings.queue.max_concurrent_renders
        entries: list[QueueEntry] = []
        finish_times = [0.0] * slots
        waiting = 0
        for job in jobs:
            slot = finish_times.index(min(finish_times))
            starts = finish_times[slot]
            if job.id in running:
                position = 0
            else:
                waiting += 1
                position = waiting
            finish_times[slot] += await self._time_left(job)
            entries.append(QueueEntry(job, position, finish_times[slot], starts))
        return entries

    async def _time_left(self, job: Job) -> float:
        live = self._estimators.get(job.id)
        if live is not None:
            estimator, started = live
            return estimator.remaining(time.monotonic() - started)
        rates = await self.timings.rates()
        shape = self._shapes.get(job.id)
        if shape is None:
            try:
                shape = self._shape(await self.plan_for(job))
            except ReelbotError:  # it will fail at once, saying why
                return 0.0
            self._shapes[job.id] = shape
        return Estimator(rates, shape).remaining(0.0)

    def _shape(self, plan: RenderPlan, *, join: bool = True) -> Shape:
        provider = self.settings.image_provider
        to_make = images_to_make(plan, self.cache, provider) if provider != "card" else []
        encoders = self.settings.video.encoder_slots
        return shape_of(plan, to_make, join=join, encoders=encoders)

    async def _tell_places(self) -> None:
        """Tell each queued job its place when it changed (a job ahead started, finished or
        was cancelled), or for the first time."""
        entries = await self.queue()
        waiting = {e.job.id for e in entries if e.position > 0}
        for job_id in set(self._places) - waiting:
            del self._places[job_id]
        for job_id in set(self._shapes) - waiting:
            del self._shapes[job_id]
        for entry in entries:
            if entry.position == 0 or self._places.get(entry.job.id) == entry.position:
                continue
            self._places[entry.job.id] = entry.position
            observer = self.observer_for(entry.job)
            if isinstance(observer, TimedObserver):
                observer.place(entry)

    async def forget(self, job_id: int, *, by: int) -> ForgottenJob:
        """/forget: stop the job if it is active, then remove what is kept of it."""
        job = await self.store.job(job_id)
        if job.state.active:
            await self.cancel(job_id)
        forgotten = await self.retention.forget(job_id, by=by)
        if forgotten is None:  # a click queued it again between the cancel and the removal
            raise ReelbotError(f"job #{job_id} changed while I was forgetting it; try again")
        return forgotten

    def is_running(self, job_id: int) -> bool:
        return job_id in self._running

    def wake(self) -> None:
        """Look at the queue again: a job was put back in it (a review action)."""
        self._wake.set()

    # ------------------------------------------------------------ review

    async def revise_scene(
        self,
        job_id: int,
        number: int,
        version: int,
        *,
        new_seed: bool = False,
        prompt: str | None = None,
        negative: str | None = None,
        media: StoredMedia | None = None,
    ) -> SceneRecord:
        """Make the next version of a scene (a new seed, a new prompt, or `media`: a picture
        uploaded for it, already in the cache) and put the job back in the queue; the caller
        shows that, then calls `wake()`. A new seed or prompt makes a generated image again.
        Raises ReviewRefused if the scene is not at `version` any more or the job is being
        rendered right now, and ImageBudgetSpent if the images it needs are over today's
        budget (`bot/admission.py`)."""
        job = await self.store.job(job_id)
        current = await self.store.scene(job_id, number)
        if current is None:
            raise ReelbotError(f"job #{job_id} has no scene {number}")
        changed = dataclasses.replace(
            current,
            seed=fresh_seed(current.seed) if new_seed else current.seed,
            image_prompt=current.image_prompt if prompt is None else prompt,
            negative_prompt=current.negative_prompt if negative is None else negative,
            media=media.model_dump_json() if media is not None else None,
        )
        revised = await self.admission.admit_revision(
            job,
            number,
            version,
            seed=changed.seed,
            image_prompt=changed.image_prompt,
            negative_prompt=changed.negative_prompt,
            images=await self._revision_images(job, changed),
            media=media,
        )
        if revised is None:
            raise await self.review_refusal(job_id, number, version)
        await self.pin_media(await self.store.job(job_id))
        log.info("job %d: scene %d is now version %d", job_id, number, revised.version)
        return revised

    async def _revision_images(self, job: Job, changed: SceneRecord) -> int:
        """Paid images the job's next run makes once `changed` replaces its scene: that
        scene's, unless it is cached, and (a failed job) those it never made."""
        records = [changed if r.number == changed.number else r
                   for r in await self.store.scenes(job.id)]  # fmt: skip
        try:
            return self.paid_images(await self.plan_for(job, records))
        except ReelbotError:  # the run will fail and say why; count the scene's image
            return 0 if self.settings.image_provider == "card" else 1

    async def approve_scene(self, job_id: int, number: int, version: int) -> Approval:
        if not await self.store.approve_scene(job_id, number, version):
            raise await self.review_refusal(job_id, number, version, approving=True)
        return await self._approval(job_id)

    async def approve_all(self, job_id: int) -> tuple[list[int], Approval]:
        """Approve every scene of a job waiting for review; the numbers newly approved."""
        job = await self.store.job(job_id)
        if job.state is not JobState.REVIEW:
            raise ReviewRefused(_not_reviewing(job))
        numbers = await self.store.approve_all(job_id)
        return numbers, await self._approval(job_id)

    async def _approval(self, job_id: int) -> Approval:
        queued = await self.store.queue_if_approved(job_id)
        scenes = await self.store.scenes(job_id)
        return Approval(sum(s.approved for s in scenes), len(scenes), queued)

    async def review_refusal(
        self, job_id: int, number: int, version: int, *, approving: bool = False
    ) -> ReelbotError:
        """Why a click on `version` of a scene cannot act, in the clicker's words."""
        job = await self.store.get_job(job_id)
        scene = await self.store.scene(job_id, number)
        if job is None or scene is None:
            return JobNotFound(job_id)
        if job.state is JobState.CANCELLED:
            return ReviewRefused(f"Job #{job_id} was cancelled: its scenes can't change any more.")
        if scene.version != version:
            if scene.posted_version != scene.version and job.state.active:
                return ReviewRefused(
                    f"Scene {number} is already being regenerated: version {scene.version} "
                    "replaces this one in a moment."
                )
            return ReviewRefused(
                f"This is version {version} of scene {number}; it is at version "
                f"{scene.version} now. Use the buttons on its latest image."
            )
        if approving and scene.approved:
            return ReviewRefused(f"Scene {number} is already approved.")
        if job.state is JobState.RUNNING:
            return ReviewRefused(
                f"Job #{job_id} is being rendered or delivered right now; try again in a "
                "moment, once it has finished."
            )
        return ReviewRefused(f"Scene {number} can't be changed while the job is {job.state}.")

    # ------------------------------------------------------------ running jobs

    async def _dispatch(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            limit = self.settings.queue.max_concurrent_renders
            if self.remote is not None:  # the workers' count limits the renders
                limit = self.settings.queue.max_total
            for job in await self.store.jobs_in([JobState.QUEUED]):
                if len(self._running) >= limit:
                    break
                if job.id in self._running:
                    continue
                task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                self._running[job.id] = task
            try:
                await self._tell_places()
            except Exception:  # a place not told must not stop the queue
                log.exception("could not tell the queued jobs their places")

    def plan(
        self, script: Script, options: JobOptions, records: Sequence[SceneRecord] | None = None
    ) -> RenderPlan:
        """The one way a job's plan is made: its script and options resolved against the
        settings, each scene's seed and prompts as `records` hold them (the store's scene rows,
        review's changes included; None: as the script gives them, for a job not stored yet).
        A scene's own media is the file uploaded with the job under the name the script gives,
        or the picture uploaded for the scene since (`SceneRecord.media`)."""
        return plan_job(self.settings, script, options, records)

    async def plan_for(self, job: Job, records: Sequence[SceneRecord] | None = None) -> RenderPlan:
        """A stored job's plan, from the store alone: its script, its options and its scene
        rows (`records`, if already read)."""
        if job.options.music and not Path(job.options.music).is_file():
            raise ReelbotError(
                "this job's music file is no longer kept (the cache removed it to stay under its "
                "size cap); render again with the music attached"
            )
        script = parse_script(job.script, filename=job.filename, limits=self.settings.limits)
        if records is None:
            records = await self.store.scenes(job.id)
        return self.plan(script, job.options, records)

    def renderer(
        self, on_event: Callable[[ProgressEvent], None], *, label: str = "", order: int = 0
    ) -> Renderer:
        return Renderer(
            self.settings,
            tts=self.tts,
            images=make_images(self.settings, self.client),
            cache=self.cache,
            on_event=on_event,
            image_slot=self.image_slot,
            encoder_slot=self.encoder_slot,
            label=label,
            order=order,
        )

    async def _run(self, job: Job) -> None:
        """One run of a job, as arq's `run_job`: under `[queue] job_timeout`, its outcome
        recorded (shielded) and told to its observer, its cancellation sorted by cause."""
        observer: JobObserver | None = None
        recorder = _ArtifactRecorder(self.store, job.id)
        meter = ImageMeter(self.store, job, clock=self.clock)
        admitted_by = self.clock()  # the admissions this run covers were made before now
        limit = self.settings.queue.job_timeout
        deadline: asyncio.Timeout | None = None
        shutdown = False
        try:
            await self.store.set_state(job.id, JobState.RUNNING)
            job = await self.store.job(job.id)
            observer = self.observer_for(job)
            if self.remote is None:
                await _quietly(observer.started(job))
            # Handed to the workers: the timeout starts when one of them starts it.
            async with asyncio.timeout(limit if self.remote is None else None) as deadline:
                await self._render_and_deliver(job, observer, recorder, meter, deadline)
        except asyncio.CancelledError:
            await recorder.flush()
            if job.id in self._cancelled_by:
                if self.remote is not None:
                    await self.remote.abort(job.id)
                await self._finish(job.id, JobState.CANCELLED, error="cancelled")
                if observer is not None:
                    by = self._cancelled_by[job.id]
                    await _quietly(observer.cancelled(await self.store.job(job.id), by))
                return
            shutdown = True
            await self._finish(job.id, JobState.QUEUED)  # shutdown: resume on the next start
            raise
        except Exception as exc:
            timed_out = (
                isinstance(exc, TimeoutError) and deadline is not None and deadline.expired()
            )
            await self._failed(job.id, observer, recorder, JobTimedOut(limit) if timed_out else exc)
        finally:
            await meter.flush()
            if not shutdown:  # the run is over: what it reserved is now what it requested
                settle = self.admission.settle(job.id, admitted_by=admitted_by)
                await _quietly(self.store.must_finish(settle))
                if self.remote is not None:
                    await _quietly(self.store.must_finish(self.remote.ended(job.id)))
            self._running.pop(job.id, None)
            self._rendering.discard(job.id)
            self._cancelled_by.pop(job.id, None)
            if self.remote is not None:  # the one evictor of the workers' shared cache
                await _quietly(self._evict_around_active_jobs())
            elif not self._running:  # no render needs its artifacts right now
                self.cache.evict(self.settings.storage.cache_max_mb * 1024 * 1024)
            self._wake.set()

    async def _render_and_deliver(
        self,
        job: Job,
        observer: JobObserver,
        recorder: _ArtifactRecorder,
        meter: ImageMeter,
        deadline: asyncio.Timeout,
    ) -> None:
        """Render the job's scenes (a review round: without the join) and deliver its video."""

        # No scene changes while the job is running (the store refuses), so this is the plan
        # the whole run renders, and what the observer read when it started.
        records = await self.store.scenes(job.id)
        plan = await self.plan_for(job, records)
        review_round = job.options.review and not all(r.approved for r in records)
        shape = self._shape(plan, join=not review_round)
        estimator = Estimator(await self.timings.rates(), shape)
        timed = observer if isinstance(observer, TimedObserver) else None

        def on_event(event: ProgressEvent) -> None:
            recorder.see(event)
            meter.see(event)
            estimator.see(event)
            if timed is not None:
                timed.estimate(estimator.remaining(event.t))
            observer.event(event)

        out = job_video(self.outputs, job.id)
        if self.remote is not None:

            async def on_started() -> None:
                self._rendering.add(job.id)
                self._estimators[job.id] = (estimator, time.monotonic())
                deadline.reschedule(asyncio.get_running_loop().time() + limit)
                await _quietly(observer.started(job))

            limit = self.settings.queue.job_timeout
            try:
                result = await self.remote.render(job, records, out, join=not review_round,
                                                  on_started=on_started, on_event=on_event,
                                                  on_replay=observer.event)  # fmt: skip
            finally:
                self._estimators.pop(job.id, None)
        else:
            renderer = self.renderer(on_event, label=f"job {job.id}", order=job.id)
            self._estimators[job.id] = (estimator, time.monotonic())
            try:
                result = await renderer.render(plan, out, join=not review_round)
            finally:
                self._estimators.pop(job.id, None)
        await recorder.flush()
        await self.timings.record(measure(result.events, shape))
        await self.store.save_events(job.id, _events_json(result.events))
        if review_round:
            state = await self.store.must_finish(self.store.end_review_round(job.id))
            if state is JobState.REVIEW and isinstance(observer, ReviewObserver):
                await _quietly(observer.reviewing(await self.store.job(job.id)))
            return  # queued again if every scene was approved meanwhile: joined next run
        delivered = await _delivered(observer.finished(await self.store.job(job.id), result))
        await self.store.must_finish(self.store.mark_delivered(job.id))
        if delivered:  # the clips stay in the cache: a revision joins them again
            removed = remove_outputs(self.outputs, job.id)
            log.info("job %d: delivered; removed %s", job.id,
                     ", ".join(p.name for p in removed) or "nothing")  # fmt: skip
        await self._finish(job.id, JobState.DONE, output=None if delivered else str(out))

    async def _failed(
        self,
        job_id: int,
        observer: JobObserver | None,
        recorder: _ArtifactRecorder,
        error: Exception,
    ) -> None:
        """Record the failure and tell the front end: a known error in its own words (with the
        events so far, for /timeline), an unknown one logged in full."""
        if isinstance(error, ReelbotError):
            log.warning("job %d failed: %s", job_id, _failure(error, recorder.events))
            await recorder.flush()
            await self.store.save_events(job_id, _events_json(recorder.events))
            reason = str(error)
        else:
            log.error("job %d failed unexpectedly", job_id, exc_info=error)
            reason = "an unexpected error stopped the render; the log has the details"
        await self._finish(job_id, JobState.FAILED, error=reason)
        if observer is not None:
            await _quietly(observer.failed(await self.store.job(job_id), reason))

    async def _finish(self, job_id: int, state: JobState, **values: str | None) -> None:
        await self.store.must_finish(self.store.set_state(job_id, state, **values))
        if not state.active:  # its own media may go once the cache needs the room
            self.cache.unpin(_pin_owner(job_id))

    async def _evict_around_active_jobs(self) -> None:
        """Keep the shared cache under its cap while workers render: never an artifact that
        a queued, running or in-review job refers to (its scenes' files, its music)."""
        active = await self.store.jobs_in([JobState.QUEUED, JobState.RUNNING, JobState.REVIEW])
        keep: set[Path] = set()
        for job in active:
            if job.options.music:
                keep.add(Path(job.options.music).resolve())
            for scene in await self.store.scenes(job.id):
                keep.update(Path(p).resolve() for p in (scene.audio, scene.image, scene.clip)
                            if p)  # fmt: skip
        self.cache.evict(self.settings.storage.cache_max_mb * 1024 * 1024, keep=keep)


class _ArtifactRecorder:
    """Writes each finished artifact's path to the store, in order, off the event callback."""

    def __init__(self, store: Store, job_id: int) -> None:
        self.store = store
        self.job_id = job_id
        self.events: list[ProgressEvent] = []
        self._pending: list[Awaitable[None]] = []

    def see(self, event: ProgressEvent) -> None:
        if isinstance(event, JobStarted):
            self.events = []
        self.events.append(event)
        if (
            isinstance(event, SceneEvent)
            and event.status in (Status.DONE, Status.CACHED)
            and event.path is not None
            and event.scene > 0
        ):
            write = self.store.record_artifact(self.job_id, event.scene, event.stage.value,
                                               str(event.path))  # fmt: skip
            self._pending.append(self.store.must_finish(write))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)  # each write must finish


def _failure(error: ReelbotError, events: Sequence[ProgressEvent]) -> str:
    """For the operator's log: the scene and stage that failed, and why, in one line."""
    failed = next((e for e in reversed(events) if isinstance(e, JobFailed)), None)
    if isinstance(error, JobTimedOut):
        return str(error)
    if isinstance(error, SceneFailed):
        cause = error.cause
        reason = str(cause) if isinstance(cause, ReelbotError) else "an unexpected error (above)"
        return f"scene {error.scene}, stage {error.stage}: {reason}"
    if failed is not None and failed.stage is not None:
        return f"stage {failed.stage}: {error}"
    return f"stage plan (before rendering): {error}"


def fresh_seed(old: int) -> int:
    """A random seed for a regenerated image (never the one it had)."""
    while (seed := secrets.randbelow(2**31)) == old:
        pass
    return seed


def _not_reviewing(job: Job) -> str:
    if job.state in (JobState.QUEUED, JobState.RUNNING):
        return f"Job #{job.id} is rendering right now; approve its scenes once they are ready."
    return f"Job #{job.id} is not waiting for review (it is {job.state})."


def _pin_owner(job_id: int) -> str:
    return f"job-{job_id}"


def _own_media(
    script: Script, options: JobOptions, records: Sequence[SceneChoice]
) -> tuple[Script, dict[int, OwnMedia]]:
    """The script with each scene's own media (the scenes given a picture in review name it),
    and that media by scene number, for `plan_render`. A name nothing was uploaded for is left
    out: `plan_render` refuses it, naming the scene."""
    uploaded = {r.number: own for r in records if (own := r.own_media) is not None}
    scenes = tuple(
        scene.model_copy(update={"media": f"your picture for scene {scene.number}"})
        if scene.number in uploaded else scene
        for scene in script.scenes
    )  # fmt: skip
    media: dict[int, OwnMedia] = {}
    for scene in scenes:
        if scene.number in uploaded:
            media[scene.number] = uploaded[scene.number].own(scene.media or "")
        elif scene.media is not None and scene.media in options.media:
            media[scene.number] = options.media[scene.media].own(scene.media)
    return script.model_copy(update={"scenes": scenes}), media


class SceneChoice(Protocol):
    """What a job keeps of each scene's image: a store row, or a worker's copy of it."""

    @property
    def number(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def image_prompt(self) -> str: ...
    @property
    def negative_prompt(self) -> str: ...
    @property
    def own_media(self) -> StoredMedia | None: ...


def plan_job(
    settings: BotSettings,
    script: Script,
    options: JobOptions,
    records: Sequence[SceneChoice] | None = None,
) -> RenderPlan:
    """A job's plan (`JobRunner.plan`; a worker of `[queue] backend = "arq"` makes the same)."""
    aspect = Aspect.parse(options.aspect) if options.aspect else None
    music = Path(options.music) if options.music else None
    script, media = _own_media(script, options, records or ())
    plan = plan_render(script, settings, aspect=aspect, voice=options.voice,
                       title=options.title, captions=options.captions,
                       music=music, media=media)  # fmt: skip
    plan = with_style(plan, options.style, options.negative)
    if records is None:
        return plan
    by_number = {s.number: s for s in records}
    return dataclasses.replace(
        plan, scenes=tuple(_with_record(s, by_number.get(s.number)) for s in plan.scenes)
    )


def _with_record(scene: ScenePlan, record: SceneChoice | None) -> ScenePlan:
    if record is None:
        return scene
    image = dataclasses.replace(
        scene.image,
        seed=record.seed,
        prompt=record.image_prompt,
        negative_prompt=record.negative_prompt,
    )
    return dataclasses.replace(scene, image=image)


def _events_json(events: list[ProgressEvent]) -> str:
    return json.dumps([event_to_dict(e) for e in events], ensure_ascii=False)


async def _quietly(work: Awaitable[None]) -> None:
    """Tell the front end; a front end failure must not change the job's recorded state."""
    try:
        await work
    except Exception:
        log.exception("front end failed while reporting a job")


async def _delivered(work: Awaitable[bool | None]) -> bool:
    """Tell the front end a video is made; whether it reached the user (False if the front
    end failed: the file is then kept)."""
    try:
        return bool(await work)
    except Exception:
        log.exception("front end failed while delivering a job")
        return False
