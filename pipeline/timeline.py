"""A render's timeline as a picture: a Gantt chart drawn from its progress events.

Every progress event carries `t`, seconds since the render started, so the list of events a
render emitted (`RenderResult.events`, or whatever an `on_event` sink collected, also from a
render that failed) is enough to redraw what happened:

    scene 1  ▕ audio ████▏                      one row per scene, three lanes:
             ▕ image ░░ ██████▏                   audio, image (wait ░, request █),
             ▕ clip             ░ ████▏            clip (wait for an encoder ░, encode █)
    join     ▕                         ██▏       the final join
                                          │ makespan, ┆ lower bound

**Bars.** `timeline_bars` turns the events into bars, one for every WAITING or STARTED event:
a bar runs from that event to the next event of the same scene and stage (WAITING → STARTED
is a wait; STARTED → DONE or FAILED is the work). `TimelineBar.outcome` is the status that
closed the bar; a bar that never closed (the render failed or was cancelled while it ran)
ends at the render's end and has `outcome=None`. A stage that was reused from the cache took
no time: it has no bar but a `TimelineMark` (drawn as a hollow diamond in its lane).

**Lower bound.** `critical_path_lower_bound` is a makespan no schedule can beat with the stage
durations this render measured, given one image slot (images one at a time, in the order they
were requested), even with unlimited parallel speech and encoders and the join last. See its
docstring for the exact definition.

**Drawing.** `draw_timeline` and `draw_comparison` draw with matplotlib's object-oriented API
(`Figure` + `FigureCanvasAgg`): no pyplot, no change to the global rcParams, so they can run in
worker threads (`asyncio.to_thread`) next to a bot's event loop. The PNG is exactly
`WIDTH_PX` wide and `timeline_height(rows…)` high, whatever is in it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Final, Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .events import JobDone, JobFailed, JobStarted, ProgressEvent, SceneEvent, Stage, Status

__all__ = [
    "DPI",
    "WIDTH_PX",
    "BarKind",
    "TimelineBar",
    "TimelineChart",
    "TimelineMark",
    "TimelinePanel",
    "cached_marks",
    "critical_path_lower_bound",
    "draw_comparison",
    "draw_timeline",
    "makespan",
    "timeline_bars",
    "timeline_figure",
    "timeline_height",
    "timeline_panel",
]

BarKind = Literal[
    "audio wait", "audio", "image wait", "image", "clip wait", "clip", "join wait", "join"
]  # fmt: skip
KINDS: Final[tuple[BarKind, ...]] = (
    "audio wait", "audio", "image wait", "image", "clip wait", "clip", "join wait", "join"
)  # fmt: skip
_WAIT_KIND: Final[dict[Stage, BarKind]] = {
    Stage.AUDIO: "audio wait",
    Stage.IMAGE: "image wait",
    Stage.CLIP: "clip wait",
    Stage.JOIN: "join wait",
}
_WORK_KIND: Final[dict[Stage, BarKind]] = {
    Stage.AUDIO: "audio",
    Stage.IMAGE: "image",
    Stage.CLIP: "clip",
    Stage.JOIN: "join",
}
JOIN_ROW: Final = "join"

# Geometry: every size is a whole number of quarter inches at DPI, so the PNG's pixel size is
# exact: WIDTH_PX by timeline_height(...).
DPI: Final = 100
WIDTH_PX: Final = 1600
ROW_PX: Final = 75  # one scene (three lanes), or the join
PANEL_PX: Final = 175  # a panel's title, time axis and labels
LEGEND_PX: Final = 100  # the shared legend (and the figure title, when there is one)

STAGE_COLOURS: Final[dict[Stage, str]] = {
    Stage.AUDIO: "#4c78a8",
    Stage.IMAGE: "#f58518",
    Stage.CLIP: "#54a24b",
    Stage.JOIN: "#b279a2",
}
FAILED_COLOUR: Final = "#d62728"
# Lanes inside a scene's row (y offsets from the row's centre; y grows downwards).
_LANE_OFFSET: Final[dict[Stage, float]] = {
    Stage.AUDIO: -0.28,
    Stage.IMAGE: 0.0,
    Stage.CLIP: 0.28,
    Stage.JOIN: 0.0,
}
_LANE_HEIGHT: Final = 0.24
_JOIN_HEIGHT: Final = 0.5
_TITLE_FONTS: Final = ("DejaVu Sans", "Noto Sans CJK JP")


@dataclass(frozen=True, slots=True)
class TimelineBar:
    """One interval of one stage of one scene (`scene` 0 and `row` "join" for the join)."""

    row: str
    kind: BarKind
    start: float
    end: float
    scene: int
    stage: Stage
    outcome: Status | None = None  # the status that ended the bar; None: never ended

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def is_wait(self) -> bool:
        return self.kind.endswith(" wait")


@dataclass(frozen=True, slots=True)
class TimelineMark:
    """A stage reused from the cache at time `t` (it took no time, so it has no bar)."""

    row: str
    stage: Stage
    t: float
    scene: int


@dataclass(frozen=True, slots=True)
class TimelinePanel:
    """Everything one chart panel shows, computed from one render's events."""

    title: str
    rows: tuple[str, ...]  # top to bottom: "scene 1", …, "join"
    bars: tuple[TimelineBar, ...]
    marks: tuple[TimelineMark, ...]
    makespan: float
    lower_bound: float | None
    failure: str | None = None  # JobFailed.reason when the render failed


@dataclass(frozen=True, slots=True)
class TimelineChart:
    """A chart written to `path`: its exact pixel size and the data of every panel drawn."""

    path: Path
    width: int
    height: int
    panels: tuple[TimelinePanel, ...]

    @property
    def bars(self) -> tuple[TimelineBar, ...]:
        return tuple(bar for panel in self.panels for bar in panel.bars)


# ---------------------------------------------------------------- events → data


def _row(scene: int, stage: Stage) -> str:
    return JOIN_ROW if stage is Stage.JOIN else f"scene {scene}"


def makespan(events: Iterable[ProgressEvent]) -> float:
    """How long the render took: the time of its JobDone or JobFailed, else of its last event
    (a render still running, or cut short), else 0."""
    end: float | None = None
    latest = 0.0
    for event in events:
        latest = max(latest, event.t)
        if isinstance(event, JobDone | JobFailed):
            end = event.t
    return latest if end is None else end


def timeline_bars(events: Iterable[ProgressEvent]) -> list[TimelineBar]:
    """One bar per WAITING or STARTED event, in the order of those events.

    A bar ends at the next event of the same scene and stage (whatever its status, which
    becomes the bar's `outcome`); a bar still open when the events end (a failed or cancelled
    render) ends at `makespan(events)` with `outcome=None`. CACHED stages have no bar (see
    `cached_marks`)."""
    events = list(events)
    end = makespan(events)
    bars: list[TimelineBar] = []
    open_bars: dict[tuple[int, Stage], int] = {}  # (scene, stage) → index in bars
    for event in events:
        if not isinstance(event, SceneEvent):
            continue
        key = (event.scene, event.stage)
        index = open_bars.pop(key, None)
        if index is not None:
            bars[index] = replace(bars[index], end=max(event.t, bars[index].start),
                                  outcome=event.status)  # fmt: skip
        if event.status in (Status.WAITING, Status.STARTED):
            kinds = _WAIT_KIND if event.status is Status.WAITING else _WORK_KIND
            row = _row(event.scene, event.stage)
            bars.append(TimelineBar(row, kinds[event.stage], event.t, max(end, event.t),
                                    event.scene, event.stage))  # fmt: skip
            open_bars[key] = len(bars) - 1
    return bars


def cached_marks(events: Iterable[ProgressEvent]) -> list[TimelineMark]:
    """One mark per CACHED event: a stage whose artifact was reused."""
    return [
        TimelineMark(_row(e.scene, e.stage), e.stage, e.t, e.scene)
        for e in events
        if isinstance(e, SceneEvent) and e.status is Status.CACHED
    ]


def critical_path_lower_bound(events: Iterable[ProgressEvent]) -> float | None:
    """A lower bound on the makespan of any schedule of this render's stage durations; None
    unless the render finished (a JobDone is among the events).

    With, from the bars of `timeline_bars` (work bars only; waits are not work):

    - `O`: the origin, the earliest start of any audio or image request;
    - `I_k`: the total duration of the image requests up to and including scene k's, in the
      order they started (the image slot takes one request at a time, back to back at best);
    - `a_k`: scene k's speech duration, `c_k`: its clip encode duration, `j`: the join's;
    - a stage reused from the cache counts as ready at once (duration 0, no `O`),

    the bound is::

        LB = O + max_k( max(I_k, a_k) + c_k ) + j

    Every clip needs its image and its audio, the join needs every clip, so no schedule of
    these durations finishes sooner. For the scene whose image is made last, `I_k` is the sum
    `I` of every image request, so LB ≥ O + max(I, a_last) + c_last + j: the classic "all
    image requests back to back from the first one, then the last scene's clip, then the
    join". Taking the maximum over every scene (rather than `max(I, max_k a_k) + c_last`)
    keeps it a true lower bound when the slowest narration is not the last scene's.

    It assumes one image slot (`[images] max_concurrency = 1`, Together's free tier). Speech
    durations are measured as they ran: speech run all at once on few cores is slower than
    alone, so the bounds of a sequential and a pipelined run of one script differ a little.
    """
    events = list(events)
    if not any(isinstance(e, JobDone) for e in events):
        return None
    bars = [b for b in timeline_bars(events) if not b.is_wait]
    starts = [b.start for b in bars if b.stage in (Stage.AUDIO, Stage.IMAGE)]
    origin = min(starts, default=0.0)
    image_ready: dict[int, float] = {}
    made = 0.0
    for bar in sorted((b for b in bars if b.stage is Stage.IMAGE), key=lambda b: b.start):
        made += bar.seconds
        image_ready[bar.scene] = made
    audio = {b.scene: b.seconds for b in bars if b.stage is Stage.AUDIO}
    clip = {b.scene: b.seconds for b in bars if b.stage is Stage.CLIP}
    join = sum(b.seconds for b in bars if b.stage is Stage.JOIN)
    scenes = {e.scene for e in events if isinstance(e, SceneEvent) and e.stage is not Stage.JOIN}
    clips_done = max(
        (max(image_ready.get(k, 0.0), audio.get(k, 0.0)) + clip.get(k, 0.0) for k in scenes),
        default=0.0,
    )
    return origin + clips_done + join


def timeline_panel(
    events: Iterable[ProgressEvent], *, title: str | None = None, lower_bound: float | None = None
) -> TimelinePanel:
    """The data one panel shows. `title` defaults to the script's title; `lower_bound`
    defaults to `critical_path_lower_bound(events)`."""
    events = list(events)
    started = next((e for e in events if isinstance(e, JobStarted)), None)
    numbers = {e.scene for e in events if isinstance(e, SceneEvent) and e.stage is not Stage.JOIN}
    count = max([started.scenes if started else 0, *numbers])
    failed = next((e for e in reversed(events) if isinstance(e, JobFailed)), None)
    if title is None:
        title = (started.title if started else "") or "render"
    if lower_bound is None:
        lower_bound = critical_path_lower_bound(events)
    return TimelinePanel(
        title=title,
        rows=(*(f"scene {n}" for n in range(1, count + 1)), JOIN_ROW),
        bars=tuple(timeline_bars(events)),
        marks=tuple(cached_marks(events)),
        makespan=makespan(events),
        lower_bound=lower_bound,
        failure=failed.reason if failed else None,
    )


# ---------------------------------------------------------------- drawing


def timeline_height(*rows: int) -> int:
    """The chart's height in pixels, for panels of `rows` rows each (scenes + the join)."""
    return LEGEND_PX + sum(PANEL_PX + ROW_PX * max(1, n) for n in rows)


def draw_timeline(
    events: Iterable[ProgressEvent],
    path: Path,
    *,
    title: str | None = None,
    lower_bound: float | None = None,
) -> TimelineChart:
    """Draw one render's timeline to the PNG `path` (its folder is created; the file appears
    complete or not at all). `title` defaults to the script's title; `lower_bound` to
    `critical_path_lower_bound(events)` (none for a render that did not finish).
    Works for a failed or cancelled render too."""
    panel = timeline_panel(events, title=title, lower_bound=lower_bound)
    return _save([panel], path, title=None)


def draw_comparison(
    sequential_events: Iterable[ProgressEvent],
    pipelined_events: Iterable[ProgressEvent],
    path: Path,
    *,
    title: str | None = None,
) -> TimelineChart:
    """Draw a sequential and a pipelined render of the same script one above the other, on one
    time axis, to the PNG `path`."""
    sequential = timeline_panel(sequential_events)
    pipelined = timeline_panel(pipelined_events)
    if title is None:
        title = f"{sequential.title}: sequential vs pipelined"
    speedup = ""
    if pipelined.makespan > 0 and sequential.makespan > 0:
        ratio = sequential.makespan / pipelined.makespan
        speedup = f" ({ratio:.1f}× faster)" if ratio >= 1 else f" ({1 / ratio:.1f}× slower)"
    panels = [
        replace(sequential, title="sequential: one scene after another"),
        replace(pipelined, title=f"pipelined{speedup}"),
    ]
    return _save(panels, path, title=title)


def _save(panels: Sequence[TimelinePanel], path: Path, *, title: str | None) -> TimelineChart:
    figure = timeline_figure(panels, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        figure.savefig(temp, format="png", dpi=DPI)
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)
    width, height = figure.canvas.get_width_height()
    return TimelineChart(path, width, height, tuple(panels))


def timeline_figure(panels: Sequence[TimelinePanel], *, title: str | None = None) -> Figure:
    """The matplotlib Figure for `panels`, stacked top to bottom on one shared time axis.

    Each bar is one Rectangle with `gid` "bar:<kind>:<scene>", each cached mark a Line2D with
    gid "cached:<stage>:<scene>", the vertical lines have gids "makespan" and "lower bound":
    tests (and curious people) can read back what was plotted without looking at pixels."""
    if not panels:
        raise ValueError("nothing to draw: no panels")
    rows = [len(p.rows) for p in panels]
    figure = Figure(figsize=(WIDTH_PX / DPI, timeline_height(*rows) / DPI), dpi=DPI,
                    layout="constrained")  # fmt: skip
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False,
                           height_ratios=[PANEL_PX + ROW_PX * n for n in rows])[:, 0]  # fmt: skip
    if title:
        figure.suptitle(_drawable(title), fontfamily=_title_fonts(), parse_math=False,
                        fontsize=15, fontweight="bold")  # fmt: skip
    right = max(max([p.makespan, *(b.end for b in p.bars)]) for p in panels)
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel)
    axes[0].set_xlim(0, (right if right > 0 else 1.0) * 1.02)
    axes[-1].set_xlabel("seconds since the render started")
    figure.legend(handles=_legend(panels), loc="outside lower center",
                  ncols=6, frameon=False, fontsize=10)  # fmt: skip
    return figure


def _draw_panel(ax: Axes, panel: TimelinePanel) -> None:
    y_of = {row: float(i) for i, row in enumerate(panel.rows)}
    for bar in panel.bars:
        colour = STAGE_COLOURS[bar.stage]
        height = _JOIN_HEIGHT if bar.stage is Stage.JOIN else _LANE_HEIGHT
        y = y_of.get(bar.row, float(len(panel.rows) - 1)) + _LANE_OFFSET[bar.stage]
        face = to_rgba(colour, 0.25 if bar.is_wait else (0.55 if bar.outcome is None else 1.0))
        edge, width, style = colour, 0.8, "solid"
        if bar.outcome is Status.FAILED:
            edge, width = FAILED_COLOUR, 2.5
        elif bar.outcome is None:
            style = "dashed"
        ax.barh(y, bar.seconds, height=height, left=bar.start, color=face, edgecolor=edge,
                linewidth=width, linestyle=style, hatch="///" if bar.is_wait else None,
                gid=f"bar:{bar.kind}:{bar.scene}")  # fmt: skip
    for mark in panel.marks:
        y = y_of.get(mark.row, float(len(panel.rows) - 1)) + _LANE_OFFSET[mark.stage]
        ax.plot([mark.t], [y], linestyle="none", marker="D", markersize=7,
                markerfacecolor="white", markeredgecolor=STAGE_COLOURS[mark.stage],
                markeredgewidth=1.8, gid=f"cached:{mark.stage.value}:{mark.scene}")  # fmt: skip
    at_top = ax.get_xaxis_transform()
    ax.axvline(panel.makespan, color="black", linewidth=1.6, gid="makespan")
    ax.text(panel.makespan, 0.98, f"makespan {_secs(panel.makespan)} ", transform=at_top,
            ha="right", va="top", fontsize=10, fontweight="bold", parse_math=False,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})  # fmt: skip
    if panel.lower_bound is not None:
        ax.axvline(panel.lower_bound, color="black", linewidth=1.4, linestyle=(0, (4, 3)),
                   gid="lower bound")  # fmt: skip
        ax.text(panel.lower_bound, 0.02, f"lower bound {_secs(panel.lower_bound)} ",
                transform=at_top, ha="right", va="bottom", fontsize=10, parse_math=False,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})  # fmt: skip
    ax.set_yticks(range(len(panel.rows)), panel.rows)
    ax.set_ylim(len(panel.rows) - 0.5, -0.5)  # scene 1 at the top, the join at the bottom
    for boundary in range(1, len(panel.rows)):
        ax.axhline(boundary - 0.5, color="#dddddd", linewidth=0.8, zorder=0)
    ax.grid(axis="x", color="#eeeeee", zorder=0)
    ax.set_axisbelow(True)
    summary = f"makespan {_secs(panel.makespan)}"
    if panel.lower_bound is not None and panel.makespan > 0:
        summary += f", lower bound {_secs(panel.lower_bound)}"
        summary += f" ({panel.lower_bound / panel.makespan:.0%} of it)"
    if panel.failure is not None:
        reason = panel.failure if len(panel.failure) <= 140 else panel.failure[:139] + "…"
        summary = f"FAILED after {_secs(panel.makespan)}: {reason}"
    ax.set_title(f"{_drawable(panel.title)} — {_drawable(summary)}", loc="left",
                 fontfamily=_title_fonts(), parse_math=False, fontsize=12,
                 color=FAILED_COLOUR if panel.failure else "black")  # fmt: skip


def _secs(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"


def _legend(panels: Sequence[TimelinePanel]) -> list[Patch | Line2D]:
    bars = [bar for panel in panels for bar in panel.bars]
    present = {bar.kind for bar in bars}
    handles: list[Patch | Line2D] = []
    for kind in KINDS:
        if kind not in present:
            continue
        stage = Stage(kind.removesuffix(" wait"))
        colour = STAGE_COLOURS[stage]
        wait = kind.endswith(" wait")
        label = {"audio": "speech (TTS)", "image": "image request", "clip": "clip encode",
                 "join": "join"}[stage.value]  # fmt: skip
        if wait:
            label = {"image": "waiting for the image slot", "clip": "waiting for an encoder"}.get(
                stage.value, f"{stage.value}: waiting"
            )
        handles.append(Patch(facecolor=to_rgba(colour, 0.25 if wait else 1.0), edgecolor=colour,
                             hatch="///" if wait else None, label=label))  # fmt: skip
    for stage in Stage:
        if any(m.stage is stage for p in panels for m in p.marks):
            handles.append(Line2D([], [], linestyle="none", marker="D", markersize=7,
                                  markerfacecolor="white", markeredgecolor=STAGE_COLOURS[stage],
                                  label=f"{stage.value} reused from the cache"))  # fmt: skip
    if any(bar.outcome is Status.FAILED for bar in bars):
        handles.append(Patch(facecolor="white", edgecolor=FAILED_COLOUR, linewidth=2.5,
                             label="failed"))  # fmt: skip
    if any(bar.outcome is None for bar in bars):
        handles.append(Patch(facecolor="white", edgecolor="grey", linestyle="dashed",
                             label="unfinished (render stopped)"))  # fmt: skip
    handles.append(Line2D([], [], color="black", linewidth=1.6, label="makespan"))
    if any(p.lower_bound is not None for p in panels):
        handles.append(Line2D([], [], color="black", linewidth=1.4, linestyle=(0, (4, 3)),
                              label="critical-path lower bound"))  # fmt: skip
    return handles


# ---------------------------------------------------------------- text the fonts can draw


@cache
def _title_fonts() -> tuple[str, ...]:
    """DejaVu Sans (bundled with matplotlib), then a CJK font when one is installed."""
    found = []
    for family in _TITLE_FONTS:
        try:
            findfont(FontProperties(family=family), fallback_to_default=False)
        except ValueError:
            continue
        found.append(family)
    return tuple(found) or ("sans-serif",)


@cache
def _drawable_codepoints() -> frozenset[int]:
    codepoints: set[int] = set()
    for family in _title_fonts():
        path = findfont(FontProperties(family=family))
        codepoints.update(FT2Font(path).get_charmap())
    return frozenset(codepoints)


def _drawable(text: str) -> str:
    """`text` without the characters no title font has (an emoji in a script title), which
    matplotlib would draw as boxes and warn about; whitespace becomes plain spaces."""
    known = _drawable_codepoints()
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or ord(ch) in known)
    return " ".join(kept.split())
