"""The render timeline: bars from progress events, the lower bound, and the PNG chart."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from pipeline.cli import main
from pipeline.events import (
    JobDone,
    JobFailed,
    JobStarted,
    ProgressEvent,
    SceneEvent,
    Stage,
    Status,
)
from pipeline.plan import plan_render
from pipeline.render import RenderResult, render_plan
from pipeline.script import parse_script
from pipeline.timeline import (
    WIDTH_PX,
    TimelineBar,
    cached_marks,
    critical_path_lower_bound,
    draw_comparison,
    draw_timeline,
    makespan,
    timeline_bars,
    timeline_figure,
    timeline_height,
    timeline_panel,
)
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory

API_KEY = "tgp-test-key-0123456789abcdef"
THREE_SCENES = """\
# Timeline
## 1
image: a red door
The first scene is short.
## 2
image: a green field
The second scene says a little more than the first.
## 3
image: a blue sea
And the third one ends it.
"""
ROOT = Path(__file__).resolve().parent.parent
KIND = {  # (stage, status of the opening event) → the bar's kind
    (Stage.AUDIO, Status.STARTED): "audio",
    (Stage.IMAGE, Status.WAITING): "image wait",
    (Stage.IMAGE, Status.STARTED): "image",
    (Stage.CLIP, Status.WAITING): "clip wait",
    (Stage.CLIP, Status.STARTED): "clip",
    (Stage.JOIN, Status.STARTED): "join",
}


def scene(t: float, n: int, stage: Stage, status: Status) -> SceneEvent:
    return SceneEvent(t, n, stage, status)


AUDIO, IMAGE, CLIP, JOIN = Stage.AUDIO, Stage.IMAGE, Stage.CLIP, Stage.JOIN
WAITING, STARTED, DONE, CACHED = Status.WAITING, Status.STARTED, Status.DONE, Status.CACHED

# Two scenes, pipelined, one image slot; scene 2's audio is reused from the cache.
FINISHED: list[ProgressEvent] = [
    JobStarted(0.0, "Two", 2),
    scene(0.00, 1, AUDIO, STARTED),
    scene(0.01, 2, AUDIO, CACHED),
    scene(0.02, 1, IMAGE, WAITING),
    scene(0.02, 1, IMAGE, STARTED),
    scene(0.03, 2, IMAGE, WAITING),
    scene(1.00, 1, AUDIO, DONE),
    scene(1.02, 1, IMAGE, DONE),
    scene(1.02, 2, IMAGE, STARTED),
    scene(1.03, 1, CLIP, WAITING),
    scene(1.03, 1, CLIP, STARTED),
    scene(2.02, 2, IMAGE, DONE),
    scene(2.03, 2, CLIP, WAITING),
    scene(2.03, 2, CLIP, STARTED),
    scene(3.03, 1, CLIP, DONE),
    scene(3.53, 2, CLIP, DONE),
    scene(3.60, 0, JOIN, STARTED),
    scene(4.00, 0, JOIN, DONE),
    JobDone(4.01, Path("two.mp4"), 9.0),
]
# Scene 1's image request is refused; the rest is cut short by the failure.
FAILED: list[ProgressEvent] = [
    JobStarted(0.0, "Broken", 2),
    scene(0.00, 1, AUDIO, STARTED),
    scene(0.01, 2, AUDIO, STARTED),
    scene(0.02, 1, IMAGE, WAITING),
    scene(0.02, 1, IMAGE, STARTED),
    scene(0.03, 2, IMAGE, WAITING),
    SceneEvent(0.50, 1, IMAGE, Status.FAILED, message="Together.ai rejected the API key"),
    JobFailed(0.60, "scene 1, image: Together.ai rejected the API key", 1, IMAGE),
]


def openers(events: list[ProgressEvent]) -> list[SceneEvent]:
    return [e for e in events if isinstance(e, SceneEvent) and e.status in (WAITING, STARTED)]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def assert_bars_match_events(bars: list[TimelineBar], events: list[ProgressEvent]) -> None:
    """One bar per WAITING/STARTED event, in order, of the right kind, starting at its time."""
    opening = openers(events)
    assert len(bars) == len(opening)
    for bar, event in zip(bars, opening, strict=True):
        assert (bar.scene, bar.stage, bar.start) == (event.scene, event.stage, event.t)
        assert bar.kind == KIND[event.stage, event.status]
        assert bar.row == ("join" if event.stage is JOIN else f"scene {event.scene}")
        assert bar.start <= bar.end <= makespan(events)


# ---------------------------------------------------------------- events → bars, pure


def test_bars_of_a_finished_render() -> None:
    bars = timeline_bars(FINISHED)
    assert_bars_match_events(bars, FINISHED)
    spans = [(b.kind, b.scene, b.start, b.end, b.outcome) for b in bars]
    assert spans == [
        ("audio", 1, 0.00, 1.00, DONE),
        ("image wait", 1, 0.02, 0.02, STARTED),
        ("image", 1, 0.02, 1.02, DONE),
        ("image wait", 2, 0.03, 1.02, STARTED),
        ("image", 2, 1.02, 2.02, DONE),
        ("clip wait", 1, 1.03, 1.03, STARTED),
        ("clip", 1, 1.03, 3.03, DONE),
        ("clip wait", 2, 2.03, 2.03, STARTED),
        ("clip", 2, 2.03, 3.53, DONE),
        ("join", 0, 3.60, 4.00, DONE),
    ]
    # The cached stage has no bar, but a mark at its time.
    assert [(m.row, m.stage, m.t) for m in cached_marks(FINISHED)] == [("scene 2", AUDIO, 0.01)]
    assert makespan(FINISHED) == 4.01


def test_the_lower_bound_follows_its_definition() -> None:
    # O = 0 (scene 1's audio); images back to back: I_1 = 1.0, I_2 = 1.0 + 1.0 = 2.0;
    # a_1 = 1.0, a_2 = 0 (cached); c_1 = 2.0, c_2 = 1.5; j = 0.4.
    # LB = O + max(max(1.0, 1.0) + 2.0, max(2.0, 0) + 1.5) + 0.4 = 3.9
    bound = critical_path_lower_bound(FINISHED)
    assert bound == pytest.approx(3.9)
    assert bound is not None and bound <= makespan(FINISHED)


def test_the_lower_bound_holds_when_the_slowest_narration_is_not_the_last() -> None:
    """Scene 1 speaks for 5 s and encodes in 1 s; scene 2 speaks for 1 s and encodes in 3 s.
    max(I, latest audio) + c_last would say 5 + 3; the best schedule needs only
    max(5 + 1, 2 + 3) = 6 before the join."""
    events: list[ProgressEvent] = [
        JobStarted(0.0, "Skewed", 2),
        scene(0.0, 1, AUDIO, STARTED), scene(0.0, 2, AUDIO, STARTED),
        scene(0.0, 1, IMAGE, STARTED), scene(1.0, 1, IMAGE, DONE),
        scene(1.0, 2, IMAGE, STARTED), scene(1.0, 2, AUDIO, DONE), scene(2.0, 2, IMAGE, DONE),
        scene(2.0, 2, CLIP, STARTED), scene(5.0, 1, AUDIO, DONE), scene(5.0, 1, CLIP, STARTED),
        scene(5.0, 2, CLIP, DONE), scene(6.0, 1, CLIP, DONE),
        scene(6.0, 0, JOIN, STARTED), scene(6.5, 0, JOIN, DONE), JobDone(6.5, Path("s.mp4"), 8.0),
    ]  # fmt: skip
    bound = critical_path_lower_bound(events)
    assert bound == pytest.approx(6.5)  # = makespan: this schedule was the best one
    assert bound is not None and bound <= makespan(events)


def test_a_failed_render_has_partial_bars_and_no_bound(tmp_path: Path) -> None:
    bars = timeline_bars(FAILED)
    assert_bars_match_events(bars, FAILED)
    outcomes = [(b.kind, b.scene, b.end, b.outcome) for b in bars]
    assert outcomes == [
        ("audio", 1, 0.60, None),  # cut short: ends with the render, never closed
        ("audio", 2, 0.60, None),
        ("image wait", 1, 0.02, STARTED),
        ("image", 1, 0.50, Status.FAILED),
        ("image wait", 2, 0.60, None),
    ]
    assert critical_path_lower_bound(FAILED) is None
    chart = draw_timeline(FAILED, tmp_path / "failed.png")
    assert png_size(chart.path) == (WIDTH_PX, timeline_height(3)) == (chart.width, chart.height)
    assert chart.panels[0].failure == "scene 1, image: Together.ai rejected the API key"
    assert chart.panels[0].rows == ("scene 1", "scene 2", "join")


def test_the_figure_plots_exactly_the_bars() -> None:
    """Read the plotted data back from the matplotlib artists: one Rectangle per bar, at the
    bar's place; one marker per cached stage; the two vertical lines at their values."""
    panel = timeline_panel(FINISHED)
    figure = timeline_figure([panel])
    (ax,) = figure.axes
    rectangles = [p for p in ax.patches
                  if isinstance(p, Rectangle) and str(p.get_gid()).startswith("bar:")]  # fmt: skip
    assert [r.get_gid() for r in rectangles] == [f"bar:{b.kind}:{b.scene}" for b in panel.bars]
    for rectangle, bar in zip(rectangles, panel.bars, strict=True):
        assert rectangle.get_x() == pytest.approx(bar.start)
        assert rectangle.get_width() == pytest.approx(bar.seconds)
    lines = {str(line.get_gid()): line for line in ax.lines
             if isinstance(line, Line2D) and line.get_gid() is not None}  # fmt: skip
    assert set(lines) == {"cached:audio:2", "makespan", "lower bound"}
    assert np.asarray(lines["makespan"].get_xdata(), dtype=float).tolist() == [4.01, 4.01]
    assert np.asarray(lines["lower bound"].get_xdata(), dtype=float) == pytest.approx([3.9, 3.9])
    assert ax.get_yticklabels()[0].get_text() == "scene 1"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["scene 1", "scene 2", "join"]


def test_titles_with_dollars_emoji_and_cjk_draw_without_warnings(tmp_path: Path) -> None:
    # "$…$" would be mathtext and a missing glyph a UserWarning (an error under pytest here).
    chart = draw_timeline(FINISHED, tmp_path / "t.png", title="Costs $5 or $6 🦜🎬 灯台守")
    assert png_size(chart.path) == (WIDTH_PX, timeline_height(3))


# ---------------------------------------------------------------- real renders


@pytest.fixture
def together(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TOGETHER_API_KEY", API_KEY)

    def factory(fake: FakeTogether, data_dir: Path | None = None) -> Any:
        sections: dict[str, Any] = {"images": {"provider": "together", "base_url": fake.base_url}}
        if data_dir is not None:
            sections["storage"] = {"data_dir": str(data_dir)}
        return make_settings(**sections)

    return factory


async def render(settings: Any, out: Path, *, sequential: bool = False) -> RenderResult:
    plan = plan_render(parse_script(THREE_SCENES), settings)
    return await render_plan(plan, settings, out, sequential=sequential)


async def test_timeline_of_a_real_render(together: Any, tmp_path: Path) -> None:
    async with FakeTogether(latency=0.3) as fake:
        result = await render(together(fake), tmp_path / "v.mp4")
    events = result.events

    chart = draw_timeline(events, tmp_path / "charts" / "timeline.png")

    assert png_size(chart.path) == (chart.width, chart.height) == (1600, timeline_height(4))
    (panel,) = chart.panels
    bars = list(panel.bars)
    assert_bars_match_events(bars, events)
    assert {b.kind for b in bars} == {"audio", "image wait", "image", "clip wait", "clip", "join"}
    assert [b.kind for b in bars].count("image") == 3 == len(fake.colours)
    assert all(b.outcome in (Status.DONE, Status.STARTED) for b in bars)  # every bar closed
    assert not panel.marks  # nothing was cached
    images = [b for b in bars if b.kind == "image"]
    for earlier, later in itertools.pairwise(images):
        assert later.start >= earlier.end  # the image slot: one request at a time
    assert all(b.seconds >= 0.29 for b in images)  # the fake's latency
    join = bars[-1]
    assert join.kind == "join" and join.row == "join"
    assert all(b.end <= join.start for b in bars[:-1])
    assert panel.makespan == events[-1].t == makespan(events)
    assert panel.lower_bound is not None
    assert sum(b.seconds for b in images) + join.seconds <= panel.lower_bound <= panel.makespan


async def test_sequential_and_pipelined_share_one_time_axis(together: Any, tmp_path: Path) -> None:
    async with FakeTogether(latency=0.3) as fake:
        sequential = await render(together(fake, tmp_path / "a"), tmp_path / "s.mp4",
                                  sequential=True)  # fmt: skip
        pipelined = await render(together(fake, tmp_path / "b"), tmp_path / "p.mp4")

    chart = draw_comparison(sequential.events, pipelined.events, tmp_path / "compare.png")

    assert png_size(chart.path) == (1600, timeline_height(4, 4)) == (chart.width, chart.height)
    top, bottom = chart.panels
    assert_bars_match_events(list(top.bars), sequential.events)
    assert_bars_match_events(list(bottom.bars), pipelined.events)
    assert top.title.startswith("sequential") and bottom.title.startswith("pipelined")
    # Sequentially, nothing overlaps: each bar starts after the previous one ended.
    work = [b for b in top.bars if not b.is_wait]
    for earlier, later in itertools.pairwise(work):
        assert later.start >= earlier.end
    for panel in chart.panels:
        assert panel.lower_bound is not None and panel.lower_bound <= panel.makespan
    figure = timeline_figure(chart.panels)
    upper, lower = figure.axes
    assert upper.get_xlim() == lower.get_xlim()
    assert upper.get_xlim()[1] >= max(top.makespan, bottom.makespan)


async def test_cached_stages_are_marks_not_bars(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()  # offline cards and espeak-ng
    await render(settings, tmp_path / "a.mp4")
    again = await render(settings, tmp_path / "b.mp4")

    chart = draw_timeline(again.events, tmp_path / "again.png")

    (panel,) = chart.panels
    assert [b.kind for b in panel.bars] == ["join"]
    assert {(m.scene, m.stage) for m in panel.marks} == {
        (n, s) for n in (1, 2, 3) for s in (AUDIO, IMAGE, CLIP)
    }
    assert panel.lower_bound is not None
    assert panel.bars[0].seconds <= panel.lower_bound <= panel.makespan
    assert png_size(chart.path) == (1600, timeline_height(4))


# ---------------------------------------------------------------- the command line


def reelbot(*args: str, cwd: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    command = shutil.which("reelbot", path=str(Path(sys.executable).parent))
    argv = [command] if command else [sys.executable, "-m", "pipeline.cli"]
    env = os.environ | {"REELBOT_STORAGE__DATA_DIR": str(data_dir), "COLUMNS": "100"}
    return subprocess.run([*argv, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_cli_writes_the_timeline(tmp_path: Path) -> None:
    done = reelbot("render", str(ROOT / "examples" / "demo.md"), "-o", "x.mp4",
                   "--timeline", "t.png", cwd=tmp_path, data_dir=tmp_path / "data")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x.mp4").is_file()
    assert png_size(tmp_path / "t.png") == (1600, timeline_height(4))  # 3 scenes and the join
    assert "timeline: t.png" in done.stderr


def test_cli_writes_the_timeline_of_a_failed_render(tmp_path: Path) -> None:
    failed = reelbot("render", str(ROOT / "examples" / "demo.md"), "-o", "x.mp4",
                     "--voice", "xx-no-such-voice", "--timeline", "out/t.png",
                     cwd=tmp_path, data_dir=tmp_path / "data")  # fmt: skip
    assert failed.returncode == 1
    assert "xx-no-such-voice" in failed.stderr
    assert not (tmp_path / "x.mp4").exists()
    assert png_size(tmp_path / "out" / "t.png") == (1600, timeline_height(4))


def test_cli_refuses_a_timeline_that_is_not_a_png(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["render", str(ROOT / "examples" / "demo.md"), "--timeline", str(tmp_path / "t.jpg")])
    assert exited.value.code == 2
    assert "name it *.png" in capsys.readouterr().err
    assert not (tmp_path / "t.jpg").exists()


def test_a_timeline_that_cannot_be_written_does_not_change_the_outcome(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    failed = reelbot("render", str(ROOT / "examples" / "demo.md"), "-o", "x.mp4",
                     "--voice", "xx-no-such-voice", "--timeline", "a-file/t.png",
                     cwd=tmp_path, data_dir=tmp_path / "data")  # fmt: skip
    assert failed.returncode == 1  # the render's failure, not the chart's
    assert "could not write the timeline a-file/t.png" in " ".join(failed.stderr.split())
    assert "xx-no-such-voice" in failed.stderr
