"""The progress message's look, drawn from state alone: no Discord call, no clock of its own.

    RenderProgress (pipeline) + what the front end knows ──view_of()──► ProgressView (frozen)
    ProgressView ──build_embed(view, now)──► discord.Embed

One embed for every phase of a job: queued, rendering (a bar, each scene's audio · image ·
clip, the time left), uploading, waiting for review (each scene's approval), done, failed
(what went wrong, and what to do about it), cancelled, paused for a restart. It keeps within
Discord's embed limits (tests/contracts/discord-limits.yaml) however many scenes there are.
Sending and editing it is `bot/progress_message.py`; its buttons are handed in by the features
(`bot/controls.py`); what it says once its job is forgotten is `bot/forgotten.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import discord

from pipeline.events import JobFailed, Stage, Status
from pipeline.progress import SCENE_STAGES, RenderProgress

from .job_words import asked_line, failure_hint
from .store import Job, SceneRecord
from .text import format_duration, ordinal, truncate

__all__ = [
    "SYMBOLS",
    "FailureView",
    "Phase",
    "ProgressView",
    "SceneLine",
    "build_embed",
    "failure_hint",
    "scene_lines",
    "view_of",
]

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
    remaining: float | None = None  # seconds left, as of the latest event
    failure: FailureView | None = None
    note: str = ""
    resumed: bool = False
    cancelled_by: int | None = None
    detail: str = ""  # one line under the headline (why it runs again)
    approved: int = 0  # scenes approved, while in review
    # The newest scene image: the URL of its attachment in the thread (nothing is uploaded
    # with an edit; Discord shows the picture already posted).
    thumbnail: str | None = None
    # Who asked, when, with which settings (`bot/job_words.py`).
    asked: str = ""
    # While queued: its place (1 = next) and when it should start and be done (seconds from
    # when the place was told), from `bot/jobs.py`'s queue.
    place: int | None = None
    starts_in: float | None = None
    done_in: float | None = None


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
    remaining: float | None = None,
    place: tuple[int, float, float] | None = None,
) -> ProgressView:
    """Freeze a RenderProgress (plus what the front end knows) into a ProgressView. In
    review, the scenes come from their `records` (the store), not from the render.
    `remaining`: the runner's estimate (`pipeline/estimate.py`); without one, the old
    extrapolation from the share done. `place`: a queued job's place, start and end."""
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
        remaining=progress.estimate_remaining() if remaining is None else remaining,
        failure=failure,
        note=note,
        resumed=resumed,
        cancelled_by=cancelled_by,
        detail=detail,
        approved=sum(r.approved for r in records),
        thumbnail=thumbnail,
        asked=asked_line(job),
        place=place[0] if place is not None else None,
        starts_in=place[1] if place is not None else None,
        done_in=place[2] if place is not None else None,
    )


def _review_line(record: SceneRecord) -> SceneLine:
    made = (Status.DONE, Status.DONE, Status.DONE)
    state = "✅ approved" if record.approved else "👀 to review"
    version = f" (version {record.version})" if record.version > 1 else ""
    return SceneLine(record.number, made, state + version)


def failure_from(event: JobFailed) -> FailureView:
    return FailureView(event.reason, event.scene, event.stage)


# ------------------------------------------------------------ drawing


def _bar(fraction: float) -> str:
    filled = min(BAR_CELLS, math.floor(fraction * BAR_CELLS + 1e-9))
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


def _headline(view: ProgressView) -> str:
    phase = view.phase
    if phase is Phase.QUEUED:
        if view.place is None:
            return "⏳ **Queued** — waiting for a render slot"
        line = "next in line" if view.place == 1 else f"{ordinal(view.place)} in line"
        return f"⏳ **Queued** — {line}"
    if phase is Phase.RUNNING:
        # Once the join has begun the headline stays there (it only moves forward): its
        # "done" comes just before the upload.
        if view.join is not None:
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
    if view.phase is Phase.QUEUED and view.starts_in is not None and view.done_in is not None:
        return (
            f"⏱ starts in about {format_duration(max(1.0, view.starts_in))}"
            f" · done in about {format_duration(max(1.0, view.done_in))}"
        )
    if view.started_at is None:
        return ""
    end = view.ended_at if view.ended_at is not None else now
    text = f"⏱ {format_duration(end - view.started_at)} elapsed"
    if view.phase is Phase.RUNNING and view.remaining is not None:
        left = view.remaining
        text += " · almost done" if left < 1.5 else f" · about {format_duration(left)} left"
    return text


def _scene_text(line: SceneLine, width: int, first: int | None = None) -> str:
    label = f"{line.number:>{width}}" if first is None else f"{first}–{line.number}"
    text = f"`{label}` " + " ".join(SYMBOLS[s] for s in line.stages)
    if line.message:
        text += f" — {truncate(line.message, 160)}"
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


def build_embed(view: ProgressView, now: float) -> discord.Embed:
    """The embed for `view` at wall-clock time `now` (the elapsed time is counted to it)."""
    embed = discord.Embed(title=truncate(f"🎬 {view.title}", 256), colour=COLOURS[view.phase])
    head = [_headline(view), view.asked or f"Asked by <@{view.user_id}>"]
    if view.detail:
        head.append(truncate(view.detail, 300))
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
            value=truncate(view.failure.reason, FIELD_LIMIT),
            inline=False,
        )
        embed.add_field(
            name="What to do", value=truncate(view.failure.hint, FIELD_LIMIT), inline=False
        )
    if view.note:
        embed.add_field(name="Video", value=truncate(view.note, FIELD_LIMIT), inline=False)
    if view.thumbnail:
        embed.set_thumbnail(url=view.thumbnail)
    embed.set_footer(text=f"job #{view.job_id} · {LEGEND}")
    return embed
