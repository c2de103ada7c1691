"""The job's thread: each scene's image posted as soon as it exists, then the storyboard.

A thread is opened on the progress message (in a thread already, or where none can be opened,
the scene messages go to the job's channel). Each scene message shows its image, prompt,
negative prompt, seed and the buttons the features hand in (`bot/controls.py`); its look is
`bot/scene_embed.py`. Everything posted is recorded in the store (the thread, each image's
message and the version it shows), so a restarted bot continues the same thread instead of
starting over.

A scene regenerated in review gets its message edited to the new image, prompt and seed; the
version it showed before is first posted in the thread as a reply to it, so every version
stays in the thread's history. Once every scene's image exists, a storyboard (all of them on
one numbered sheet) is posted, once per set of images: the store records which images it
shows, so a resumed render does not post it again and a regenerated scene gets a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import discord

from pipeline.errors import ReelbotError
from pipeline.storyboard import make_storyboard

from .controls import with_buttons
from .progress_message import EDIT_LIMIT_REACHED, UNKNOWN_MESSAGE, ProgressMessage
from .scene_embed import STORYBOARD_FILE, replaced, scene_embed, scene_filename, storyboard_embed
from .store import Job, SceneRecord, Store

__all__ = ["SceneButtons", "SceneThread", "redraw_scenes", "storyboard_key"]

log = logging.getLogger(__name__)

THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440  # a day
DRAIN_TIMEOUT = 60.0  # seconds the video waits for image posts still in flight

# A scene message's buttons for one version of the scene (`Controls.scene_view`).
SceneButtons = Callable[[Job, SceneRecord], discord.ui.View | None]

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
        buttons: SceneButtons = lambda job, record: None,
        on_thumbnail: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self._buttons = buttons
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
        view = self._buttons(self.job, planned)
        shown = current.image_message_id
        if shown is not None and (current.posted_version or version) >= version:
            # The message already shows this version (posted before a restart); its image
            # still makes a thumbnail for a progress message that has none yet.
            if self.thumbnail is None:
                with contextlib.suppress(discord.HTTPException):
                    self._shows(await target.fetch_message(shown))
            return
        if shown is None:
            file = discord.File(item.path, filename)
            sent = await target.send(embed=embed, file=file, **with_buttons(view))
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
        embed = storyboard_embed(len(item.images), updated=job.storyboard is not None)
        with tempfile.TemporaryDirectory(prefix="reelbot-storyboard-") as folder:
            # Pillow's work, off the event loop; the file is gone once it is sent.
            sheet = await asyncio.to_thread(
                make_storyboard, item.images, Path(folder) / STORYBOARD_FILE
            )
            posted = await target.send(embed=embed, file=discord.File(sheet, STORYBOARD_FILE))
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
            text, embed = replaced(shown.embeds, scene, old, new,
                                   files[0].filename if files else None)  # fmt: skip
            archived = await target.send(
                text,
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
        view: discord.ui.View | None,
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
        return await target.send(embed=embed, file=discord.File(image, filename),
                                 **with_buttons(view))  # fmt: skip

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


async def redraw_scenes(
    client: discord.Client, store: Store, job: Job, numbers: Sequence[int], buttons: SceneButtons
) -> None:
    """Draw the scene messages of `numbers` again as the store has them (an approval shows on
    its message; the image stays as it is)."""
    channel = client.get_partial_messageable(
        job.thread_id or job.channel_id,
        guild_id=job.guild_id,
        type=discord.ChannelType.public_thread if job.thread_id else None,
    )
    for number in numbers:
        record = await store.scene(job.id, number)
        if record is None or record.image_message_id is None:
            continue
        if record.posted_version != record.version:
            continue  # a newer version is on its way; its message is drawn when it comes
        suffix = Path(record.image).suffix if record.image else ".png"  # the image's type
        filename = scene_filename(number, record.version, suffix)
        embed = scene_embed(job, record, filename=filename)
        try:
            await channel.get_partial_message(record.image_message_id).edit(
                embed=embed, view=buttons(job, record)
            )
        except discord.HTTPException as exc:
            log.warning("job %d: could not redraw scene %d's message: %s", job.id, number, exc)
