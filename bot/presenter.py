"""The Discord side of a job: the `JobObserver` the runner talks to.

    JobRunner ──queued / started / event / finished / failed / cancelled / reviewing──►
        JobPresenter ├─► ProgressMessage (bot/progress_message.py: the embed, paced edits)
                     ├─► SceneThread (bot/scene_thread.py: each image at once, the storyboard)
                     └─► VideoDelivery (bot/delivery.py: the MP4, as a reply)

Only the pipeline's events are read (never its internals). The presenter keeps what the
messages show (the phase, the times, the failure) and hands it to the drawing
(`bot/progress_embed.py`) as one frozen view. Everything shown is also recorded in the store
(progress message, thread, each image's message and the version it shows), so a restarted bot
continues the same message and thread instead of starting over. The progress embed's
thumbnail is the newest scene image, by the URL of its attachment already posted in the thread
(an edit uploads nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import discord

from pipeline.events import JobStarted, ProgressEvent, SceneEvent, Stage, Status
from pipeline.progress import RenderProgress
from pipeline.render import RenderResult
from pipeline.storyboard import scene_images

from .answers import mention_only
from .config import BotSettings
from .controls import Controls
from .delivery import VideoDelivery, upload_limit_for
from .forgotten import forgotten_embed, forgotten_note
from .jobs import QueueEntry
from .progress_embed import FailureView, Phase, ProgressView, view_of
from .progress_message import ProgressMessage
from .retention import ForgottenJob, PostedMessage
from .scene_thread import SceneThread, redraw_scenes
from .store import Job, JobState, SceneRecord, Store
from .text import plain

__all__ = ["JobPresenter", "Presenters"]

log = logging.getLogger(__name__)


class JobPresenter:
    """One job's observer (see `bot.jobs.JobObserver`)."""

    def __init__(
        self,
        client: discord.Client,
        store: Store,
        settings: BotSettings,
        job: Job,
        *,
        resumed: bool,
        controls: Controls,
        on_closed: Callable[[int], None],
    ) -> None:
        self.client = client
        self.store = store
        self.settings = settings
        self.job = job
        self.resumed = resumed
        self.progress = RenderProgress()
        self.phase = Phase.QUEUED
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.note = ""
        self.detail = ""  # why it runs again (a review action), shown under the headline
        self.records: list[SceneRecord] = []  # drawn while the job waits for review
        self.failure: FailureView | None = None
        self.cancelled_by: int | None = None
        self.message = ProgressMessage(client, store, job, settings.discord,
                                       buttons=controls.progress_view)  # fmt: skip
        self.thread = SceneThread(client, store, job, self.message,
                                  buttons=controls.scene_view, on_thumbnail=self._show)  # fmt: skip
        self.events: list[ProgressEvent] = []  # this run's, for the storyboard
        self._storyboard_offered = False
        self._on_closed = on_closed
        self._closed = False
        self._rendering = False  # between started() and the run's outcome
        self.remaining: float | None = None  # the runner's estimate of this run's time left
        self.queue_place: tuple[int, float, float] | None = None  # queued: place, starts, done

    # ------------------------------------------------------------ JobObserver

    def queued(self, job: Job) -> None:
        """Draw the "queued" state (just submitted, or still waiting after a restart)."""
        self._show()

    def place(self, entry: QueueEntry) -> None:
        """Its place in the queue changed: say so (while it is still queued)."""
        self.queue_place = (entry.position, entry.starts_in, entry.estimate)
        if self.phase is Phase.QUEUED:
            self._show()

    def estimate(self, remaining: float) -> None:
        """The runner's estimate of the time left; the event that follows draws it."""
        self.remaining = remaining

    async def started(self, job: Job) -> None:
        self.job = job
        self._rendering = True
        self.phase = Phase.RUNNING
        self.started_at = job.started_at or time.time()
        self.ended_at = None
        self.progress = RenderProgress()
        self.failure, self.note = None, ""
        self.events, self._storyboard_offered = [], False
        self.remaining, self.queue_place = None, None
        self._show()
        self.thread.plan(job, await self.store.scenes(job.id))

    def event(self, event: ProgressEvent) -> None:
        self.progress.apply(event)
        if isinstance(event, JobStarted):
            self.events, self._storyboard_offered = [], False
        self.events.append(event)
        if (
            isinstance(event, SceneEvent)
            and event.stage is Stage.IMAGE
            and event.status in (Status.DONE, Status.CACHED)
            and event.path is not None
        ):
            self.thread.post(event.scene, event.path)
            self._offer_storyboard()
        self._show()

    def _offer_storyboard(self) -> None:
        """Once every scene's image exists (and there is more than one scene): the
        storyboard, posted after the last image."""
        if self._storyboard_offered:
            return
        images = scene_images(self.events)
        if images is not None and len(images) > 1:
            self._storyboard_offered = True
            self.thread.storyboard(images)

    async def finished(self, job: Job, result: RenderResult) -> bool:
        """Deliver the video; True if it reached the requester (the runner may then remove
        the file)."""
        self.job = job
        self.phase = Phase.DELIVERING
        self._show()
        await self.thread.drain()
        version = await self._version_note(job)
        delivery = VideoDelivery(
            channel=self.message.channel,
            job_id=job.id,
            user_id=job.user_id,
            title=self.progress.title or job.title,
            upload_limit=self.upload_limit(job),
            reference=self.message.reference(),
            kept_as=_kept_as(result.output, self.settings),
            preset=self.settings.video.preset,
            timeout=self.settings.video.timeout,
            note=version,
        )
        outcome = await delivery.deliver(result.output, result.duration)
        if outcome.message_id is not None:  # /forget blanks it
            await self.store.record_message(job.id, self.message.channel.id, outcome.message_id,
                                            "video")  # fmt: skip
        self.note = f"{version} {outcome.note}".strip()
        self.detail = ""
        await self._finish(Phase.DONE)
        return outcome.delivered

    async def reviewing(self, job: Job) -> None:
        """Every scene is made: wait for approvals (the presenter stays, to redraw them)."""
        self._rendering = False
        await self.thread.drain()
        self.detail = ""
        self.ended_at = time.time()
        await self.show_review(job)

    async def _version_note(self, job: Job) -> str:
        """For a video made again after a scene changed: which version, and what changed."""
        if job.videos == 0:
            return ""
        scenes = await self.store.scenes(job.id)
        changed = [s.number for s in scenes if s.delivered_version not in (None, s.version)]
        if not changed:
            return f"Version {job.videos + 1} (no scene changed)."
        which = ", ".join(map(str, changed))
        return f"Version {job.videos + 1}: scene{'s' if len(changed) > 1 else ''} {which} changed."

    async def failed(self, job: Job, reason: str) -> None:
        self.job = job
        if self.progress.failed is None:  # no JobFailed event: an unexpected error
            self.failure = FailureView(reason)
        await self._finish(Phase.FAILED)
        # An edit notifies nobody: tell the requester, pointing at the details.
        title = plain(self.progress.title or job.title)
        await self._notify(
            f"<@{job.user_id}> **{title}** failed: {reason[:1500]} (what to do, and a 🔁 Retry "
            "button, are above)."
        )

    async def cancelled(self, job: Job, by: int | None) -> None:
        self.job = job
        self.cancelled_by = by
        await self._finish(Phase.CANCELLED)

    # ------------------------------------------------------------ front-end calls

    def requeued(self, job: Job, detail: str) -> None:
        """A review action put the job back in the queue."""
        self.detail = detail
        self.resumed = False
        if not self._rendering:  # the runner may already have taken it: then it says so
            self.job = job
            self.phase = Phase.QUEUED
            self.failure, self.note, self.cancelled_by = None, "", None
        self._show()

    async def show_review(self, job: Job) -> None:
        """Draw the job waiting for review, with its approvals as the store has them."""
        self.job = job
        self.phase = Phase.REVIEW
        self.records = await self.store.scenes(job.id)
        self._show()

    async def pause(self) -> None:
        """The bot is stopping: say so; the job resumes at the next start. A job waiting for
        review is not paused: its buttons work again as soon as the bot is back."""
        await self._finish(Phase.REVIEW if self.phase is Phase.REVIEW else Phase.PAUSED,
                           timeout=5.0)  # fmt: skip

    async def _notify(self, text: str) -> None:
        reference = self.message.reference()
        try:
            sent = await self.message.channel.send(
                text,
                allowed_mentions=mention_only(discord.Object(self.job.user_id)),
                reference=reference,  # type: ignore[arg-type]  # None: a plain message
            )
            await self.store.record_message(self.job.id, sent.channel.id, sent.id, "notice")
        except discord.HTTPException:
            log.exception("job %d: could not notify the requester", self.job.id)

    def upload_limit(self, job: Job) -> int:
        return upload_limit_for(self.client.get_guild(job.guild_id) if job.guild_id else None)

    # ------------------------------------------------------------ drawing

    def view(self) -> ProgressView:
        return view_of(
            self.progress,
            self.job,
            self.phase,
            started_at=self.started_at,
            ended_at=self.ended_at,
            failure=self.failure,
            note=self.note,
            resumed=self.resumed,
            cancelled_by=self.cancelled_by,
            detail=self.detail,
            records=self.records,
            thumbnail=self.thread.thumbnail,
            remaining=self.remaining,
            place=self.queue_place,
        )

    def _show(self) -> None:
        if not self._closed:
            self.message.show(self.view())

    def stop(self) -> None:
        """Draw nothing more (the job was forgotten)."""
        self._closed = True

    async def _finish(self, phase: Phase, *, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self.phase = phase
        if self.started_at is not None:
            self.ended_at = time.time()
        self._closed = True
        try:
            await self.message.close(self.view(), timeout=timeout)
        finally:
            await self.thread.close()
            self._on_closed(self.job.id)


class Presenters:
    """Makes (and keeps) one JobPresenter per live job: the runner's `observer_for`.

    A presenter is made when the runner queues a job (to show "queued" at once), or finds one
    queued after a restart, or when a review action redraws a job waiting for review; all of
    them get the same object. `controls` holds the buttons the features put on the messages.
    """

    def __init__(self, settings: BotSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.controls = Controls()
        self._client: discord.Client | None = None
        self._live: dict[int, JobPresenter] = {}

    def bind(self, client: discord.Client) -> None:
        self._client = client

    def observer_for(self, job: Job) -> JobPresenter:
        return self._get(job, resumed=job.progress_message_id is not None)

    def requeued(self, job: Job, detail: str) -> None:
        """A review action queued the job again (`detail` says which): show it queued now,
        before the runner takes it."""
        self._get(job, resumed=False).requeued(job, detail)

    async def review_changed(self, job: Job) -> None:
        """Redraw a job waiting for review (an approval). After a restart it has no presenter
        yet: one is made, drawn from the store."""
        if job.state is JobState.REVIEW:
            await self._get(job, resumed=False).show_review(job)

    async def scenes_changed(self, job: Job, numbers: Sequence[int]) -> None:
        """Redraw the messages of these scenes as the store has them (an approval)."""
        await redraw_scenes(self.client, self.store, job, numbers, self.controls.scene_view)

    async def close(self) -> None:
        live = list(self._live.values())
        if live:
            await asyncio.gather(*(p.pause() for p in live), return_exceptions=True)

    async def forgotten(self, forgotten: ForgottenJob) -> None:
        """The runner forgot a job: its presenter (if any) stops drawing, then its messages
        say so (`bot/forgotten.py`): the progress message, and after /forget the images are
        deleted and the videos and notices blanked. A message someone already deleted is
        skipped; any other failure is logged and the rest go on."""
        presenter = self._live.pop(forgotten.job.id, None)
        if presenter is not None:
            presenter.stop()
            await presenter.message.close(timeout=10.0)  # the draws in flight end first
            await presenter.thread.close()
        embed, note = forgotten_embed(forgotten), forgotten_note(forgotten)
        for post in forgotten.posts:
            act: Callable[[discord.PartialMessage], Awaitable[object]]
            if post.kind == "progress":
                act = lambda m: m.edit(embed=embed, view=None)  # noqa: E731
            elif forgotten.asked_by is None:
                continue
            elif post.kind == "image":
                act = lambda m: m.delete()  # noqa: E731
            else:  # a video, a notice
                act = lambda m: m.edit(content=note, embeds=[], attachments=[])  # noqa: E731
            await self._change(forgotten.job, post, act)

    async def _change(
        self,
        job: Job,
        post: PostedMessage,
        act: Callable[[discord.PartialMessage], Awaitable[object]],
    ) -> None:
        channel = self.client.get_partial_messageable(post.channel_id, guild_id=job.guild_id)
        try:
            await act(channel.get_partial_message(post.message_id))
        except discord.NotFound:
            pass  # someone deleted it already
        except discord.HTTPException as exc:
            log.warning("could not change message %d of forgotten job %d: %s",
                        post.message_id, job.id, exc)  # fmt: skip

    @property
    def client(self) -> discord.Client:
        if self._client is None:
            raise RuntimeError("Presenters.bind(client) was never called")
        return self._client

    def _get(self, job: Job, *, resumed: bool) -> JobPresenter:
        presenter = self._live.get(job.id)
        if presenter is None:
            presenter = JobPresenter(self.client, self.store, self.settings, job,
                                     resumed=resumed, controls=self.controls,
                                     on_closed=self._forget)  # fmt: skip
            self._live[job.id] = presenter
        return presenter

    def _forget(self, job_id: int) -> None:
        self._live.pop(job_id, None)


def _kept_as(output: Path, settings: BotSettings) -> str:
    try:
        return str(output.relative_to(settings.storage.data_dir))
    except ValueError:
        return output.name
