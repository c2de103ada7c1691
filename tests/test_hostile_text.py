"""Text that is hostile to command lines and filter graphs renders as written and changes
nothing it should not."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.captions import parse_ass_events
from pipeline.events import ProgressEvent, SceneEvent
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.video import ClipSpec, clip_argv, concat_argv

from .conftest import SettingsFactory
from .media import ffprobe

HOSTILE = "It's \"quoted\": a; b, 100% \\ [x] = y -- $(rm -rf /) `id` {\\b1} 'end"
TITLE = "Title: 'q' \"d\" ; , % \\ [0:v] = 🎬 映画 فيلم"


async def test_hostile_text_renders_and_round_trips(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    script = json.dumps(
        {
            "title": TITLE,
            "scenes": [
                {"narration": HOSTILE, "image_prompt": HOSTILE + "\nsecond line"},
                {"narration": "Emoji 🎉 and 漢字 and עברית text.", "image_prompt": "[in]=;,"},
            ],
        }
    )
    settings = make_settings()
    plan = plan_render(parse_script(script, filename="x.json"), settings)
    events: list[ProgressEvent] = []
    out = tmp_path / "hostile.mp4"
    result = await render_plan(plan, settings, out, on_event=events.append)

    probe = ffprobe(out)
    assert probe.tags["title"] == TITLE  # metadata carries the title exactly
    assert probe.stream("video")["width"] == 1080
    assert abs(probe.duration - sum(s.clip_seconds for s in result.scenes)) < 0.2
    # The hostile narration was burned in as captions (on by default for 9:16), as text: the
    # ASS events hold every word and no override block or line break came from the user.
    captions = result.scenes[0].captions
    assert captions is not None
    cues = parse_ass_events(captions.read_text(encoding="utf-8"))
    shown = " ".join(cue.text for cue in cues)
    assert "{\\b1}" not in shown  # the override block is escaped: shown as text, not applied
    literal = shown.replace("\u2060", "").replace("\\{", "{").replace("\\}", "}")
    assert literal.split() == HOSTILE.split()
    # No file name anywhere came from user text: artifacts are named by their content hash.
    for event in events:
        if isinstance(event, SceneEvent) and event.path is not None and event.path != out:
            assert re.fullmatch(r"[0-9a-f]{32}\.(png|wav|mp4)", event.path.name), event.path
    # And no user text reaches an ffmpeg command line, except the title as one metadata value.
    scene = result.scenes[0]
    argv = clip_argv(ClipSpec(scene.image, scene.audio, scene.audio_seconds, plan.frame,
                              settings.video), tmp_path / "c.mp4")  # fmt: skip
    assert not any("quoted" in arg for arg in argv)
    join = concat_argv(tmp_path / "l.txt", out, title=TITLE)
    assert [arg for arg in join if "quoted" in arg or "映画" in arg] == [f"title={TITLE}"]
