"""Two renders of the same script to the same output, at the same time, both succeed: their
temporary files have names of their own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script

from .conftest import SettingsFactory
from .media import ffprobe

SCRIPT = "# Twice\n## 1\nThe same words, twice at once.\n## 2\nAnd a second scene to join.\n"


async def test_two_renders_to_the_same_output_both_succeed(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # Crossfades and the sound pass: every temporary file of the join is used.
    settings = make_settings(video={"crossfade": 0.3, "fps": 15}, sound={"normalize": True})
    plan = plan_render(parse_script(SCRIPT), settings)
    out = tmp_path / "same.mp4"

    first, second = await asyncio.gather(
        render_plan(plan, settings, out), render_plan(plan, settings, out)
    )

    probe = ffprobe(out)
    for result in (first, second):
        assert result.output == out
        assert abs(result.duration - probe.duration) < 0.05
    assert probe.stream("video")["codec_name"] == "h264"
    assert abs(probe.duration - sum(s.clip_seconds for s in first.scenes) + 0.3) < 0.15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "same.mp4"]  # no leftovers
