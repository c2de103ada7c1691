"""The Discord side of a job: the `JobObserver` the runner talks to.

    JobRunner ──started / event / finished / failed / cancelled──► JobPresenter
                                                        ├─► ProgressMessage (embed, paced edits)
                                                        ├─► SceneThread (each image, at once)
                                                        └─► VideoDelivery (the MP4, as a reply)

Only the pipeline's events are read (never its internals). Everything shown is also
recorded in the store (progress message, thread, each image's message), so a restarted bot
continues the same message and thread instead of starting over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import discord

from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.progress import RenderProgress
from pipeline.render import RenderResult

from .answers import mention_only
from .config import BotSettings
from .delivery import VideoDelivery
from .progress_message import FailureView, Phase, ProgressMessage, ProgressView, view_of
from .store import Job, SceneRecord, Store

__all__ = ["JobPresenter", "Presenters", "SceneThread"]

log = logging.getLogger(__name__)

THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440  # a day
DRAIN_TIMEOUT = 60.0  # seconds the video waits for image posts still in flight


@dataclass(frozen=True)
class _ImagePost:
    scene: int
    path: Path
    seed: int | None


class SceneThread:
    """A thread opened on the progress message; each scene's image is posted there as soon
    as it exists, with its prompt, negative prompt and seed. Posts go out one at a time, in
    the order the images were made; a scene already posted (before a restart) is skipped."""

    def __init__(
        self, client: discord.Client, store: Store, job: Job, progress: ProgressMessage
    ) -> None:
        self.client = client
        self.store = store
        self.job = job
        self.progress = progress
        self.thread_id = job.thread_id
        self._queue: asyncio.Queue[_ImagePost | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._records: dict[int, SceneRecord] = {}

    def post(self, scene: int, path: Path, seed: int | None) -> None:
        self._queue.put_nowait(_ImagePost(scene, path, seed))
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
        self._records = {s.number: s for s in await self.store.scenes(self.job.id)}
        target = await self._open()
        while (item := await self._queue.get()) is not None:
            record = self._records.get(item.scene)
            if record is not None and record.image_message_id is not None:
                continue  # posted before a restart
            try:
                message = await target.send(
                    embed=_image_embed(item, record), file=discord.File(item.path, _name(item))
                )
            except (discord.HTTPException, OSError):
                log.exception("job %d: could not post scene %d's image", self.job.id, item.scene)
                continue
            await self.store.update_scene(self.job.id, item.scene, image_message_id=message.id)

    async def _open(self) -> discord.abc.Messageable:
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


def _name(item: _ImagePost) -> str:
    return f"scene-{item.scene:02d}{item.path.suffix or '.png'}"


def _image_embed(item: _ImagePost, record: SceneRecord | None) -> discord.Embed:
    prompt = record.image_prompt if record else ""
    negative = record.negative_prompt if record else ""
    seed = item.seed if item.seed is not None else (record.seed if record else None)
    embed = discord.Embed(title=f"Scene {item.scene}", description=prompt[:4000] or "—")
    embed.add_field(name="Negative prompt", value=(negative or "—")[:1000], inline=False)
    embed.add_field(name="Seed", value=str(seed) if seed is not None else "—", inline=True)
    embed.set_image(url=f"attachment://{_name(item)}")
    return embed


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
        self.failure: FailureView | None = None
        self.cancelled_by: int | None = None
        self.message = ProgressMessage(client, store, job, settings.discord)
        self.thread = SceneThread(client, store, job, self.message)
        self._on_closed = on_closed
        self._closed = False

    # ------------------------------------------------------------ JobObserver

    async def started(self, job: Job) -> None:
        self.job = job
        self.phase = Phase.RUNNING
        self.started_at = job.started_at or time.time()
        self.progress = RenderProgress()
        self._show()

    def event(self, event: ProgressEvent) -> None:
        self.progress.apply(event)
        if (
            isinstance(event, SceneEvent)
            and event.stage is Stage.IMAGE
            and event.status in (Status.DONE, Status.CACHED)
            and event.path is not None
        ):
            self.thread.post(event.scene, event.path, event.seed)
        self._show()

    async def finished(self, job: Job, result: RenderResult) -> None:
        self.job = job
        self.phase = Phase.DELIVERING
        self._show()
        await self.thread.drain()
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
        )
        outcome = await delivery.deliver(result.output, result.duration)
        self.note = outcome.note
        await self._finish(Phase.DONE)

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

    async def pause(self) -> None:
        """The bot is stopping: say so; the job resumes at the next start."""
        await self._finish(Phase.PAUSED, timeout=5.0)

    async def _notify(self, text: str) -> None:
        reference = self.message.reference()
        try:
            await self.message.channel.send(
                text,
                allowed_mentions=mention_only(discord.Object(self.job.user_id)),
                reference=reference,  # type: ignore[arg-type]  # None: a plain message
            )
        except discord.HTTPException:
            log.exception("job %d: could not notify the requester", self.job.id)

    def upload_limit(self, job: Job) -> int:
        if job.options.upload_limit:
            return job.options.upload_limit
        guild = self.client.get_guild(job.guild_id) if job.guild_id else None
        return guild.filesize_limit if guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

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
        )

    def _show(self) -> None:
        if not self._closed:
            self.message.show(self.view())

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

    async def show_cancelled(self, job: Job, *, by: int | None = None) -> None:
        """A queued job was cancelled (a running one is told by the runner)."""
        presenter = self._get(job, resumed=False)
        presenter.cancelled_by = by
        await presenter.cancelled(job)

    async def close(self) -> None:
        live = list(self._live.values())
        if live:
            await asyncio.gather(*(p.pause() for p in live), return_exceptions=True)

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
