"""The live progress message: an embed drawn from a render's events, edited at a calm pace.

RenderProgress ──view_of()──► ProgressView ──build_embed()──► discord.Embed
                                    │
              EditCoalescer: at most one draw per `edit_interval`, latest view wins,
                                    │  the final view is always drawn
                                    ▼
              ProgressMessage: edit the message; if Discord will not edit it any more
              (older than `message_max_age`, at the edit limit of messages older than an hour:
              error 30046, or deleted) post a new one and
              record it in the store, so a restart continues the right message.

While a job waits for review the message lists each scene's approval and carries an
"Approve all" button (`bot/review.py`); in every other phase it has no buttons. Its thumbnail
is the newest scene image, by the URL of that image's attachment in the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import aiohttp
import discord

from pipeline.events import JobFailed, Stage, Status
from pipeline.progress import SCENE_STAGES, RenderProgress

from .config import DiscordConfig
from .review import approve_all_view
from .store import Job, SceneRecord, Store

__all__ = [
    "SYMBOLS",
    "EditCoalescer",
    "FailureView",
    "Phase",
    "ProgressMessage",
    "ProgressView",
    "SceneLine",
    "build_embed",
    "failure_hint",
    "format_duration",
    "view_of",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

SYMBOLS: dict[Status | None, str] = {
    None: "▫️",
    Status.WAITING: "⏳",
    Status.STARTED: "🔄",
    Status.DONE: "✅",
    Status.CACHED: "☑️",
    Status.FAILED: "❌",
}
LEGEND = "✅ done · ☑️ reused · 🔄 working · ⏳ waiting · ❌ failed"
# Discord caps: description 4096, field value 1024, whole embed 6000 characters. The scene
# list gets what is left of a budget that keeps the whole embed under 6000.
DESCRIPTION_BUDGET = 3600
FIELD_LIMIT = 1000
BAR_CELLS = 12
# Codes after which a progress message cannot be edited any more: post a new one.
# 30046: "Maximum number of edits to messages older than 1 hour reached": a message older than
# an hour may be edited only so often.
EDIT_LIMIT_REACHED = 30046
UNKNOWN_MESSAGE = 10008


class Phase(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # the bot is shutting down; the job resumes at the next start
    REVIEW = "review"  # every scene is made; the video waits for the scenes' approval


COLOURS = {
    Phase.QUEUED: discord.Colour.light_grey(),
    Phase.RUNNING: discord.Colour.blurple(),
    Phase.DELIVERING: discord.Colour.blurple(),
    Phase.DONE: discord.Colour.green(),
    Phase.FAILED: discord.Colour.red(),
    Phase.CANCELLED: discord.Colour.dark_grey(),
    Phase.PAUSED: discord.Colour.orange(),
    Phase.REVIEW: discord.Colour.gold(),
}
REVIEW_HELP = (
    "Check each scene's image in the thread: 🔁 Regenerate it, ✏️ Edit its prompt or "
    "✅ Approve it. The video is made once every scene is approved (or press Approve all)."
)


@dataclass(frozen=True)
class SceneLine:
    number: int
    stages: tuple[Status | None, ...]  # audio, image, clip
    message: str = ""

    @property
    def finished(self) -> bool:
        return all(s in (Status.DONE, Status.CACHED) for s in self.stages)


@dataclass(frozen=True)
class FailureView:
    reason: str
    scene: int | None = None
    stage: Stage | None = None

    @property
    def hint(self) -> str:
        return failure_hint(self.stage)


@dataclass(frozen=True)
class ProgressView:
    """Everything the embed shows, frozen: the coalescer keeps only the latest one."""

    job_id: int
    title: str
    user_id: int
    phase: Phase
    scenes: tuple[SceneLine, ...] = ()
    join: Status | None = None
    fraction: float = 0.0
    started_at: float | None = None  # wall clock
    ended_at: float | None = None
    remaining: float | None = None
    failure: FailureView | None = None
    note: str = ""
    resumed: bool = False
    cancelled_by: int | None = None
    detail: str = ""  # one line under the headline (why it runs again)
    approved: int = 0  # scenes approved, while in review
    # The newest scene image: the URL of its attachment in the thread (nothing is uploaded
    # with an edit; Discord shows the picture already posted).
    thumbnail: str | None = None


def view_of(
    progress: RenderProgress,
    job: Job,
    phase: Phase,
    *,
    started_at: float | None = None,
    ended_at: float | None = None,
    failure: FailureView | None = None,
    note: str = "",
    resumed: bool = False,
    cancelled_by: int | None = None,
    detail: str = "",
    records: Sequence[SceneRecord] = (),
    thumbnail: str | None = None,
) -> ProgressView:
    """Freeze a RenderProgress (plus what the front end knows) into a ProgressView. In
    review, the scenes come from their `records` (the store), not from the render."""
    if phase is Phase.REVIEW and records:
        scenes = tuple(_review_line(r) for r in records)
    elif progress.scenes:
        scenes = tuple(
            SceneLine(
                s.number, tuple(s.status(stage) for stage in SCENE_STAGES), s.message or s.note
            )
            for s in progress.scenes
        )
    else:  # not started yet: every scene still to do
        scenes = tuple(SceneLine(n, (None, None, None)) for n in range(1, job.scene_count + 1))
    if failure is None and progress.failed is not None and phase is Phase.FAILED:
        failure = failure_from(progress.failed)
    return ProgressView(
        job_id=job.id,
        title=progress.title or job.title,
        user_id=job.user_id,
        phase=phase,
        scenes=scenes,
        join=progress.join,
        fraction=progress.fraction if progress.scenes else 0.0,
        started_at=started_at,
        ended_at=ended_at,
        remaining=progress.estimate_remaining(),
        failure=failure,
        note=note,
        resumed=resumed,
        cancelled_by=cancelled_by,
        detail=detail,
        approved=sum(r.approved for r in records),
        thumbnail=thumbnail,
    )


def _review_line(record: SceneRecord) -> SceneLine:
    made = (Status.DONE, Status.DONE, Status.DONE)
    state = "✅ approved" if record.approved else "👀 to review"
    version = f" (version {record.version})" if record.version > 1 else ""
    return SceneLine(record.number, made, state + version)


def failure_from(event: JobFailed) -> FailureView:
    return FailureView(event.reason, event.scene, event.stage)


def failure_hint(stage: Stage | None) -> str:
    """What the user can do about a failure at `stage`."""
    again = "Run /render again when it is fixed: the scenes already made are reused."
    if stage is Stage.IMAGE:
        return (
            "The image service failed. If the message is about the API key or credit, the "
            f"bot's operator has to fix that; if it is busy or timed out, try later. {again}"
        )
    if stage is Stage.AUDIO:
        return (
            "The narration failed: the speech server may be down, or the voice is unknown. "
            f"Check the voice name, or ask the bot's operator to check the speech server. {again}"
        )
    if stage in (Stage.CLIP, Stage.JOIN):
        return (
            "ffmpeg failed while encoding the video; the bot's log has ffmpeg's own message. "
            f"{again} If it keeps failing, tell the bot's operator."
        )
    return again


# ------------------------------------------------------------ drawing


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _bar(fraction: float) -> str:
    filled = min(BAR_CELLS, math.floor(fraction * BAR_CELLS + 1e-9))
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _headline(view: ProgressView) -> str:
    phase = view.phase
    if phase is Phase.QUEUED:
        return "⏳ **Queued** — waiting for a render slot"
    if phase is Phase.RUNNING:
        if view.join in (Status.STARTED, Status.WAITING):
            return "🔄 **Joining the clips**"
        resumed = " (resumed after a restart)" if view.resumed else ""
        return f"🔄 **Rendering**{resumed}"
    if phase is Phase.DELIVERING:
        return "📤 **Uploading the video**"
    if phase is Phase.DONE:
        return "✅ **Done**"
    if phase is Phase.FAILED:
        failure = view.failure
        where = []
        if failure is not None and failure.scene:
            where.append(f"scene {failure.scene}")
        if failure is not None and failure.stage is not None:
            where.append(f"{failure.stage.value} stage")
        return "❌ **Failed**" + (f" at {', '.join(where)}" if where else "")
    if phase is Phase.CANCELLED:
        by = f" by <@{view.cancelled_by}>" if view.cancelled_by else ""
        return f"🚫 **Cancelled**{by}"
    if phase is Phase.REVIEW:
        approved = f"{view.approved} of {len(view.scenes)} scenes approved"
        return f"👀 **Waiting for review** — {approved}"
    return "⏸ **Paused** — the bot is restarting; this render continues when it is back"


def _timing(view: ProgressView, now: float) -> str:
    if view.started_at is None:
        return ""
    end = view.ended_at if view.ended_at is not None else now
    text = f"⏱ {format_duration(end - view.started_at)} elapsed"
    if view.phase is Phase.RUNNING and view.remaining is not None:
        text += f" · about {format_duration(view.remaining)} left"
    return text


def _scene_text(line: SceneLine, width: int, first: int | None = None) -> str:
    label = f"{line.number:>{width}}" if first is None else f"{first}–{line.number}"
    text = f"`{label}` " + " ".join(SYMBOLS[s] for s in line.stages)
    if line.message:
        text += f" — {_truncate(line.message, 160)}"
    return text


def scene_lines(scenes: Sequence[SceneLine], budget: int) -> list[str]:
    """One line per scene; when that does not fit, runs of scenes in the same state become
    one line ("`3–40` ✅ ✅ ✅"); if even that does not fit, the tail is summarised."""
    width = len(str(len(scenes)))
    lines = [_scene_text(s, width) for s in scenes]
    if _fits(lines, budget):
        return lines
    lines = []
    i = 0
    while i < len(scenes):
        j = i
        while (
            j + 1 < len(scenes)
            and scenes[j + 1].stages == scenes[i].stages
            and not scenes[j + 1].message
            and not scenes[i].message
        ):
            j += 1
        first = scenes[i].number if j > i else None
        lines.append(_scene_text(scenes[j], width, first))
        i = j + 1
    if _fits(lines, budget):
        return lines
    kept: list[str] = []
    for index, line in enumerate(lines):
        rest = f"… and {len(lines) - index} more lines of scenes"
        if not _fits([*kept, line, rest], budget):
            return [*kept, rest]
        kept.append(line)
    return kept


def _fits(lines: Sequence[str], budget: int) -> bool:
    return sum(len(line) + 1 for line in lines) <= budget


def build_embed(view: ProgressView, now: float | None = None) -> discord.Embed:
    now = time.time() if now is None else now
    embed = discord.Embed(title=_truncate(f"🎬 {view.title}", 256), colour=COLOURS[view.phase])
    head = [_headline(view), f"Requested by <@{view.user_id}>"]
    if view.detail:
        head.append(_truncate(view.detail, 300))
    if view.phase is Phase.REVIEW:  # waiting for people: no bar, no clock
        head.append(REVIEW_HELP)
    else:
        if view.phase is not Phase.QUEUED:
            head.append(f"`{_bar(view.fraction)}` {math.floor(view.fraction * 100)} %")
        timing = _timing(view, now)
        if timing:
            head.append(timing)
    head.append("")
    head.append(f"**Scenes** — audio · image · clip ({len(view.scenes)})")
    budget = DESCRIPTION_BUDGET - sum(len(line) + 1 for line in head) - 40
    body = scene_lines(view.scenes, budget)
    if view.join is not None:
        body.append(f"**Join** {SYMBOLS[view.join]}")
    embed.description = "\n".join(head + body)
    if view.failure is not None:
        embed.add_field(
            name="What went wrong",
            value=_truncate(view.failure.reason, FIELD_LIMIT),
            inline=False,
        )
        embed.add_field(
            name="What to do", value=_truncate(view.failure.hint, FIELD_LIMIT), inline=False
        )
    if view.note:
        embed.add_field(name="Video", value=_truncate(view.note, FIELD_LIMIT), inline=False)
    if view.thumbnail:
        embed.set_thumbnail(url=view.thumbnail)
    embed.set_footer(text=f"job #{view.job_id} · {LEGEND}")
    return embed


# ------------------------------------------------------------ pacing


class EditCoalescer(Generic[T]):
    """Draws states at most once per `interval` seconds: the latest state wins, states in
    between are skipped, and `close(final)` always draws the final one.

    A failed draw is logged and does not stop later ones. Discord's 429s never reach here:
    discord.py waits and retries them itself.
    """

    def __init__(
        self,
        draw: Callable[[T], Awaitable[None]],
        *,
        interval: float,
        name: str = "coalescer",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._draw = draw
        self.interval = interval
        self.name = name
        self._clock = clock
        self._latest: T | None = None
        self._pending = False
        self._closing = False
        self._wake = asyncio.Event()
        self._drawn = asyncio.Event()
        self._last_draw = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.draws = 0

    def update(self, state: T) -> None:
        """Offer a new state (never blocks). Ignored once closing."""
        if self._closing:
            return
        self._set(state)

    async def close(self, final: T | None = None, *, timeout: float = 30.0) -> None:
        """Draw `final` (after at most one interval) and stop."""
        if final is not None and not self._closing:
            self._set(final)
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("%s: the last draw took longer than %.0f s; dropped", self.name, timeout)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_drawn(self) -> None:
        """Until the first draw has been attempted."""
        await self._drawn.wait()

    def _set(self, state: T) -> None:
        self._latest = state
        self._pending = True
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                delay = self._last_draw + self.interval - self._clock()
                if delay > 0:
                    await asyncio.sleep(delay)  # newer states replace _latest meanwhile
                state, self._pending = self._latest, False
                self._last_draw = self._clock()
                try:
                    await self._draw(state)  # type: ignore[arg-type]
                except (aiohttp.ClientError, OSError) as exc:  # the connection, not a bug
                    log.warning("%s: drawing failed (%s); the next state will try again",
                                self.name, exc or type(exc).__name__)  # fmt: skip
                except Exception:
                    log.exception("%s: drawing failed; the next state will try again", self.name)
                finally:
                    self.draws += 1
                    self._drawn.set()
                if self._pending:
                    self._wake.set()
            if self._closing and not self._pending:
                return


# ------------------------------------------------------------ the Discord message


class ProgressMessage:
    """One job's progress message in its channel (found again after a restart)."""

    def __init__(self, client: discord.Client, store: Store, job: Job, config: DiscordConfig):
        self.store = store
        self.job_id = job.id
        self.channel = client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        self.message_id = job.progress_message_id
        self.posted_at = job.progress_posted_at
        self.max_age = config.message_max_age
        self.replaced = 0  # messages posted to replace one that could not be edited
        self._posted = asyncio.Event()
        if self.message_id is not None:
            self._posted.set()
        self._coalescer: EditCoalescer[ProgressView] = EditCoalescer(
            self._draw, interval=config.edit_interval, name=f"progress-job-{job.id}"
        )

    def show(self, view: ProgressView) -> None:
        self._coalescer.update(view)

    async def close(self, final: ProgressView | None = None, *, timeout: float = 30.0) -> None:
        await self._coalescer.close(final, timeout=timeout)

    async def posted(self, timeout: float = 30.0) -> int | None:
        """The message's id once it exists (None if it could not be posted in time)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._posted.wait()
        return self.message_id

    def reference(self) -> discord.MessageReference | None:
        if self.message_id is None:
            return None
        return discord.MessageReference(
            message_id=self.message_id, channel_id=self.channel.id, fail_if_not_exists=False
        )

    def _too_old(self) -> bool:
        return self.posted_at is not None and time.time() - self.posted_at > self.max_age

    async def _draw(self, view: ProgressView) -> None:
        embed = build_embed(view)
        # Approve all while in review; no buttons otherwise (an edit with none removes it).
        buttons = approve_all_view(view.job_id) if view.phase is Phase.REVIEW else None
        if self.message_id is not None and not self._too_old():
            try:
                await self.channel.get_partial_message(self.message_id).edit(
                    embed=embed, view=buttons
                )
                return
            except discord.HTTPException as exc:
                if exc.code not in (EDIT_LIMIT_REACHED, UNKNOWN_MESSAGE):
                    raise
                log.info("job %d: progress message %d cannot be edited (%s); posting a new one",
                         self.job_id, self.message_id, exc.code)  # fmt: skip
        await self._post(embed, buttons)

    async def _post(self, embed: discord.Embed, buttons: discord.ui.View | None) -> None:
        replacing = self.message_id is not None
        if buttons is None:
            message = await self.channel.send(embed=embed)
        else:
            message = await self.channel.send(embed=embed, view=buttons)
        if self.message_id is not None:  # the old one stays, showing the job: /forget edits it
            await self.store.record_message(self.job_id, self.channel.id, self.message_id,
                                            "progress")  # fmt: skip
        self.message_id, self.posted_at = message.id, time.time()
        self.replaced += replacing
        await self.store.set_progress_message(self.job_id, message.id, self.posted_at)
        self._posted.set()
