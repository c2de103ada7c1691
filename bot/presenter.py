"""The Discord side of a job: the `JobObserver` the runner talks to.

    JobRunner ──started / event / finished / failed / cancelled / reviewing──► JobPresenter
                                                        ├─► ProgressMessage (embed, paced edits)
                                                        ├─► SceneThread (each image, at once;
                                                        │   then the storyboard)
                                                        └─► VideoDelivery (the MP4, as a reply)

Only the pipeline's events are read (never its internals). Everything shown is also
recorded in the store (progress message, thread, each image's message and the version it
shows), so a restarted bot continues the same message and thread instead of starting over.

A scene regenerated in review (`bot/review.py`) gets its message edited to the new image,
prompt and seed; the version it showed before is first posted in the thread as a reply to it,
so every version stays in the thread's history.

The progress embed's thumbnail is the newest scene image, by the URL of the attachment
already posted in the thread (an edit uploads nothing). Once every scene's image exists, a
storyboard (all of them on one numbered sheet) is posted in the thread, once per set of
images: the store records which images it shows, so a resumed render does not post it again
and a regenerated scene gets a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import discord

from pipeline.errors import ReelbotError
from pipeline.events import JobStarted, ProgressEvent, SceneEvent, Stage, Status
from pipeline.progress import RenderProgress
from pipeline.render import RenderResult
from pipeline.storyboard import make_storyboard, scene_images

from .answers import mention_only
from .config import BotSettings
from .delivery import VideoDelivery, upload_limit_for
from .forgotten import show_forgotten
from .progress_message import (
    EDIT_LIMIT_REACHED,
    UNKNOWN_MESSAGE,
    FailureView,
    Phase,
    ProgressMessage,
    ProgressView,
    view_of,
)
from .retention import ForgottenJob
from .review import scene_buttons, scene_embed, scene_filename
from .store import Job, JobState, SceneRecord, Store

__all__ = ["STORYBOARD_FILENAME", "JobPresenter", "Presenters", "SceneThread", "storyboard_key"]

log = logging.getLogger(__name__)

THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440  # a day
DRAIN_TIMEOUT = 60.0  # seconds the video waits for image posts still in flight
STORYBOARD_FILENAME = "storyboard.jpg"


# Where scene messages go: the thread, or the job's channel if no thread could be opened.
Target = discord.Thread | discord.PartialMessageable


@dataclass(frozen=True)
class _ImagePost:
    scene: int
    path: Path


@dataclass(frozen=True)
class _StoryboardPost:
    images: tuple[Path, ...]  # every scene's image, scene 1 first


def storyboard_key(images: Sequence[Path]) -> str:
    """Which images a storyboard shows. Image paths are content-addressed (prompt, seed, ...),
    so a regenerated scene changes the key and a resumed render keeps it."""
    return hashlib.sha256("\n".join(map(str, images)).encode("utf-8")).hexdigest()[:32]


class SceneThread:
    """A thread opened on the progress message; each scene's image is posted there as soon
    as it exists, with its prompt, negative prompt, seed and review buttons. Posts go out one
    at a time, in the order the images were made. A scene whose message already shows this
    version (posted before a restart) is skipped; one showing an older version is edited.
    After the images, the storyboard, unless the thread already has one of these images.

    `thumbnail` is the URL of the newest image posted (for the progress embed);
    `on_thumbnail` is called when it changes."""

    def __init__(
        self,
        client: discord.Client,
        store: Store,
        job: Job,
        progress: ProgressMessage,
        *,
        on_thumbnail: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.store = store
        self.job = job
        self.progress = progress
        self.thread_id = job.thread_id
        self.thumbnail: str | None = None
        self._on_thumbnail = on_thumbnail
        self._queue: asyncio.Queue[_ImagePost | _StoryboardPost | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._planned: dict[int, SceneRecord] = {}

    def plan(self, job: Job, records: list[SceneRecord]) -> None:
        """The scene versions this run renders (read when it started: they cannot change
        while it runs). An image event belongs to these versions even if a click has made
        a newer one by the time it is posted."""
        self.job = job
        self._planned = {s.number: s for s in records}

    def post(self, scene: int, path: Path) -> None:
        self._put(_ImagePost(scene, path))

    def storyboard(self, images: Sequence[Path]) -> None:
        """Post these images as one storyboard, after the images offered so far."""
        self._put(_StoryboardPost(tuple(images)))

    def _put(self, item: _ImagePost | _StoryboardPost) -> None:
        self._queue.put_nowait(item)
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"thread-job-{self.job.id}")

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait until every image offered so far is posted (or `timeout`)."""
        if self._worker is None:
            return
        self._queue.put_nowait(None)
        worker, self._worker = self._worker, None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(worker)
        except TimeoutError:
            log.warning("job %d: image posts still pending after %.0f s", self.job.id, timeout)
            worker.cancel()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _run(self) -> None:
        try:
            await self._post_all()
        except Exception:  # a broken thread must not break the render or the delivery
            log.exception("job %d: posting the scene images failed", self.job.id)

    async def _post_all(self) -> None:
        target = await self._open()
        while (item := await self._queue.get()) is not None:
            if isinstance(item, _StoryboardPost):
                try:
                    await self._post_storyboard(target, item)
                except (discord.HTTPException, OSError, ReelbotError, ValueError):
                    log.exception("job %d: could not post the storyboard", self.job.id)
                continue
            try:
                await self._show(target, item)
            except (discord.HTTPException, OSError):
                log.exception("job %d: could not post scene %d's image", self.job.id, item.scene)

    async def _show(self, target: Target, item: _ImagePost) -> None:
        current = await self.store.scene(self.job.id, item.scene)
        planned = self._planned.get(item.scene, current)
        if current is None or planned is None:
            log.warning("job %d: no record of scene %d", self.job.id, item.scene)
            return
        version = planned.version
        filename = scene_filename(item.scene, version, item.path.suffix)
        embed = scene_embed(self.job, planned, filename=filename)
        view = scene_buttons(self.job, planned)
        shown = current.image_message_id
        if shown is not None and (current.posted_version or version) >= version:
            # The message already shows this version (posted before a restart); its image
            # still makes a thumbnail for a progress message that has none yet.
            if self.thumbnail is None:
                with contextlib.suppress(discord.HTTPException):
                    self._shows(await target.fetch_message(shown))
            return
        if shown is None:
            sent = await target.send(embed=embed, file=discord.File(item.path, filename), view=view)
        else:
            await self._archive(target, shown, item.scene, current.posted_version, version)
            sent = await self._replace(target, shown, embed, item.path, filename, view)
            if sent.id != shown:  # posted anew: the old message stays, with its image
                await self.store.record_message(self.job.id, target.id, shown, "image")
        await self.store.set_scene_message(self.job.id, item.scene, sent.id, version)
        self._shows(sent)

    def _shows(self, message: discord.Message) -> None:
        """`message` shows the newest scene image: its attachment is the thumbnail now."""
        if message.attachments:
            self.thumbnail = message.attachments[0].url
            self._on_thumbnail()

    async def _post_storyboard(self, target: Target, item: _StoryboardPost) -> None:
        key = storyboard_key(item.images)
        job = await self.store.get_job(self.job.id)
        if job is None or job.storyboard == key:
            return  # the thread has this storyboard already (posted before a restart)
        count = len(item.images)
        embed = discord.Embed(
            title="Storyboard" if job.storyboard is None else "Storyboard (updated)",
            description=f"All {count} scenes, in order: left to right, top to bottom.",
        )
        embed.set_image(url=f"attachment://{STORYBOARD_FILENAME}")
        with tempfile.TemporaryDirectory(prefix="reelbot-storyboard-") as folder:
            # Pillow's work, off the event loop; the file is gone once it is sent.
            sheet = await asyncio.to_thread(
                make_storyboard, item.images, Path(folder) / STORYBOARD_FILENAME
            )
            posted = await target.send(embed=embed, file=discord.File(sheet, STORYBOARD_FILENAME))
        await self.store.record_message(self.job.id, target.id, posted.id, "image")
        await self.store.must_finish(self.store.set_storyboard(self.job.id, key))

    async def _archive(
        self, target: Target, message_id: int, scene: int, old: int | None, new: int
    ) -> None:
        """Post the version a scene message shows as a reply to it, before it is replaced:
        its image, prompt and seed stay in the thread's history."""
        try:
            shown = await target.fetch_message(message_id)
            files = [await a.to_file() for a in shown.attachments[:1]]
            embed = shown.embeds[0].copy() if shown.embeds else discord.Embed()
            embed.title = f"Scene {scene} · version {old or 1} (replaced)"
            for index in reversed(range(len(embed.fields))):
                if embed.fields[index].name == "Review":
                    embed.remove_field(index)
            if files:
                embed.set_image(url=f"attachment://{files[0].filename}")
            archived = await target.send(
                f"Scene {scene}, version {old or 1}: replaced by version {new} (the message "
                "this replies to).",
                embed=embed,
                files=files,
                reference=shown.to_reference(fail_if_not_exists=False),
            )
            await self.store.record_message(self.job.id, target.id, archived.id, "image")
        except (discord.HTTPException, OSError) as exc:
            log.warning("job %d: could not keep scene %d's version %s in the thread: %s",
                        self.job.id, scene, old, exc)  # fmt: skip

    async def _replace(
        self,
        target: Target,
        message_id: int,
        embed: discord.Embed,
        image: Path,
        filename: str,
        view: discord.ui.View,
    ) -> discord.Message:
        """Edit the scene message to the new version; post a new one if Discord will not
        let it be edited any more. The message that shows it."""
        message = target.get_partial_message(message_id)
        try:
            return await message.edit(embed=embed, attachments=[discord.File(image, filename)],
                                      view=view)  # fmt: skip
        except discord.HTTPException as exc:
            if exc.code not in (EDIT_LIMIT_REACHED, UNKNOWN_MESSAGE):
                raise
        return await target.send(embed=embed, file=discord.File(image, filename), view=view)

    async def _open(self) -> Target:
        """The thread (opened now, or the one recorded before a restart); the job's own
        channel if a thread cannot be opened there (e.g. /render was used in a thread)."""
        channel_id, guild_id = self.job.channel_id, self.job.guild_id
        if self.thread_id is not None:
            return self.client.get_partial_messageable(
                self.thread_id, guild_id=guild_id, type=discord.ChannelType.public_thread
            )
        fallback = self.client.get_partial_messageable(channel_id, guild_id=guild_id)
        message_id = await self.progress.posted()
        with contextlib.suppress(TimeoutError):  # the channel cache fills once the bot is ready
            async with asyncio.timeout(30):
                await self.client.wait_until_ready()
        channel = self.client.get_channel(channel_id)
        if message_id is None or not isinstance(channel, discord.TextChannel):
            return fallback
        name = f"{self.job.title} · job {self.job.id}"[:100]
        try:
            thread = await channel.get_partial_message(message_id).create_thread(
                name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES
            )
        except discord.HTTPException as exc:
            log.warning("job %d: cannot open a thread (%s); images go to the channel",
                        self.job.id, exc)  # fmt: skip
            return fallback
        self.thread_id = thread.id
        await self.store.set_thread(self.job.id, thread.id)
        return thread


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
        self.message = ProgressMessage(client, store, job, settings.discord)
        self.thread = SceneThread(client, store, job, self.message, on_thumbnail=self._show)
        self.events: list[ProgressEvent] = []  # this run's, for the storyboard
        self._storyboard_offered = False
        self._on_closed = on_closed
        self._closed = False
        self._rendering = False  # between started() and the run's outcome

    # ------------------------------------------------------------ JobObserver

    async def started(self, job: Job) -> None:
        self.job = job
        self._rendering = True
        self.phase = Phase.RUNNING
        self.started_at = job.started_at or time.time()
        self.ended_at = None
        self.progress = RenderProgress()
        self.failure, self.note = None, ""
        self.events, self._storyboard_offered = [], False
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
        title = discord.utils.escape_markdown(self.progress.title or job.title)
        await self._notify(
            f"<@{job.user_id}> **{title}** failed: {reason[:1500]} (what to do is above)."
        )

    async def cancelled(self, job: Job) -> None:
        self.job = job
        await self._finish(Phase.CANCELLED)

    # ------------------------------------------------------------ front-end calls

    def queued(self) -> None:
        """Draw the "queued" state (right after /render)."""
        self._show()

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
    """Makes (and keeps) one JobPresenter per live job; the runner's `observer_for`.

    A presenter is made when /render queues a job (to show "queued" at once) or when the
    runner starts one it resumed after a restart; both get the same object.
    """

    def __init__(self, settings: BotSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._client: discord.Client | None = None
        self._live: dict[int, JobPresenter] = {}

    def bind(self, client: discord.Client) -> None:
        self._client = client

    def observer_for(self, job: Job) -> JobPresenter:
        return self._get(job, resumed=job.progress_message_id is not None)

    def announce(self, job: Job, *, resumed: bool = False) -> JobPresenter:
        """Show a queued job's progress message now: just queued by a command, or still
        waiting after a restart (`resumed`)."""
        presenter = self._get(job, resumed=resumed)
        presenter.queued()
        return presenter

    def get(self, job_id: int) -> JobPresenter | None:
        return self._live.get(job_id)

    def requeued(self, job: Job, detail: str) -> None:
        """A review action queued the job again (`detail` says which): show it queued now,
        before the runner takes it."""
        self._get(job, resumed=False).requeued(job, detail)

    async def review_changed(self, job: Job) -> None:
        """Redraw a job waiting for review (an approval). After a restart it has no presenter
        yet: one is made, drawn from the store."""
        if job.state is JobState.REVIEW:
            await self._get(job, resumed=False).show_review(job)

    async def show_cancelled(self, job: Job, *, by: int | None = None) -> None:
        """A queued job was cancelled (a running one is told by the runner)."""
        presenter = self._get(job, resumed=False)
        presenter.cancelled_by = by
        await presenter.cancelled(job)

    async def close(self) -> None:
        live = list(self._live.values())
        if live:
            await asyncio.gather(*(p.pause() for p in live), return_exceptions=True)

    async def forgotten(self, forgotten: ForgottenJob) -> None:
        """The runner forgot a job: its presenter (if any) stops drawing, then its messages
        say so (`bot/forgotten.py`)."""
        presenter = self._live.pop(forgotten.job.id, None)
        if presenter is not None:
            presenter.stop()
            await presenter.message.close(timeout=10.0)  # the draws in flight end first
            await presenter.thread.close()
        if self._client is not None:
            await show_forgotten(self._client, forgotten)

    def _get(self, job: Job, *, resumed: bool) -> JobPresenter:
        presenter = self._live.get(job.id)
        if presenter is None:
            if self._client is None:
                raise RuntimeError("Presenters.bind(client) was never called")
            presenter = JobPresenter(self._client, self.store, self.settings, job,
                                     resumed=resumed, on_closed=self._forget)  # fmt: skip
            self._live[job.id] = presenter
        return presenter

    def _forget(self, job_id: int) -> None:
        self._live.pop(job_id, None)


def _kept_as(output: Path, settings: BotSettings) -> str:
    try:
        return str(output.relative_to(settings.storage.data_dir))
    except ValueError:
        return output.name
