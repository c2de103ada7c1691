"""Whole renders on the embedded defaults: real espeak-ng, real ffmpeg, offline cards."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from pipeline.aspect import Aspect
from pipeline.errors import SceneFailed
from pipeline.events import JobDone, JobFailed, ProgressEvent, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.video import clip_argv, concat_argv

from .conftest import SettingsFactory
from .media import ffprobe, packet_count

THREE_SCENES = """\
# Three Scenes
## 1
image: a red door
The first scene is short.
## 2
The second scene says a little more than the first one did.
## 3
image: a quiet harbour at night
And the third one ends it.
"""


def scene_events(events: list[ProgressEvent], stage: Stage) -> list[SceneEvent]:
    return [e for e in events if isinstance(e, SceneEvent) and e.stage is stage]


async def test_three_scenes_on_the_defaults(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings()
    plan = plan_render(parse_script(THREE_SCENES), settings)
    events: list[ProgressEvent] = []
    out = tmp_path / "three.mp4"

    result = await render_plan(plan, settings, out, on_event=events.append)

    probe = ffprobe(out)
    video, audio = probe.stream("video"), probe.stream("audio")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert video["pix_fmt"] == "yuv420p"
    assert video["r_frame_rate"] == "30/1"
    assert audio["codec_name"] == "aac"
    assert probe.tags.get("title") == "Three Scenes"
    expected = sum(s.audio_seconds + settings.video.pad_seconds for s in result.scenes)
    assert abs(probe.duration - expected) <= 0.1 * len(result.scenes)
    for scene in result.scenes:  # the audio really is the narration, measured
        assert 1.0 < scene.audio_seconds < 8.0
        assert abs(ffprobe(scene.clip).duration - scene.audio_seconds - 0.4) < 0.1
    assert isinstance(events[-1], JobDone)
    assert events == result.events
    # every scene went through every stage
    for stage in (Stage.AUDIO, Stage.IMAGE, Stage.CLIP):
        done = {e.scene for e in scene_events(events, stage) if e.status is Status.DONE}
        assert done == {1, 2, 3}


async def test_the_join_is_a_stream_copy(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings()
    plan = plan_render(parse_script(THREE_SCENES), settings)
    out = tmp_path / "joined.mp4"
    result = await render_plan(plan, settings, out)
    argv = concat_argv(tmp_path / "list", out, title="x")
    assert argv[argv.index("-c") + 1] == "copy"
    assert "-filter_complex" not in argv
    # Every video packet of every clip is in the output, no more, no fewer: nothing re-encoded.
    assert packet_count(out) == sum(packet_count(s.clip) for s in result.scenes)


async def test_rerender_reuses_every_artifact(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    plan = plan_render(parse_script(THREE_SCENES), settings)
    await render_plan(plan, settings, tmp_path / "a.mp4")
    edited = THREE_SCENES.replace("And the third one ends it.", "The third one is new.")
    events: list[ProgressEvent] = []
    await render_plan(plan_render(parse_script(edited), settings), settings, tmp_path / "b.mp4",
                      on_event=events.append)  # fmt: skip
    made = {(e.scene, e.stage) for e in events if isinstance(e, SceneEvent)
            and e.status is Status.STARTED and e.stage is not Stage.JOIN}  # fmt: skip
    reused = {(e.scene, e.stage) for e in events if isinstance(e, SceneEvent)
              and e.status is Status.CACHED}  # fmt: skip
    # Only scene 3's narration changed: its audio and clip are made again, nothing else.
    assert made == {(3, Stage.AUDIO), (3, Stage.CLIP)}
    unchanged = {(n, stage) for n in (1, 2) for stage in (Stage.AUDIO, Stage.IMAGE, Stage.CLIP)}
    assert reused == unchanged | {(3, Stage.IMAGE)}
    assert abs(ffprobe(tmp_path / "b.mp4").duration - ffprobe(tmp_path / "a.mp4").duration) < 3


@pytest.mark.parametrize("aspect", [Aspect.LANDSCAPE, Aspect.SQUARE])
async def test_aspect_presets(
    make_settings: SettingsFactory, tmp_path: Path, aspect: Aspect
) -> None:
    settings = make_settings()
    plan = plan_render(parse_script("## 1\nHello."), settings, aspect=aspect)
    await render_plan(plan, settings, tmp_path / "a.mp4")
    video = ffprobe(tmp_path / "a.mp4").stream("video")
    assert (video["width"], video["height"]) == aspect.frame


async def test_a_failed_scene_names_scene_and_stage(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    # Not "no-...": espeak-ng, like its command, takes that as a language (Norwegian).
    script = parse_script("## 1\nFine.\n## 2\nvoice: xx-no-such-voice\nBroken voice.")
    events: list[ProgressEvent] = []
    with pytest.raises(SceneFailed) as caught:
        await render_plan(plan_render(script, settings), settings, tmp_path / "x.mp4",
                          on_event=events.append)  # fmt: skip
    assert (caught.value.scene, caught.value.stage) == (2, "audio")
    assert str(caught.value).startswith("scene 2, audio: ")
    assert "xx-no-such-voice" in str(caught.value)
    failed = events[-1]
    assert isinstance(failed, JobFailed) and failed.scene == 2 and failed.stage is Stage.AUDIO
    assert not (tmp_path / "x.mp4").exists()


def child_processes() -> list[str]:
    """Names of this process's live children, read from /proc."""
    me = str(os.getpid())
    names = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        fields = rest.split()
        if fields[1] == me and fields[0] != "Z":
            names.append(name)
    return names


async def test_cancel_leaves_no_process_behind(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(video={"pad_seconds": 5.0, "preset": "slow"})
    text = "\n".join(f"## {n}\nScene number {n} has a few words to say." for n in range(1, 5))
    plan = plan_render(parse_script(text), settings)
    encoding = asyncio.Event()

    def on_event(event: ProgressEvent) -> None:
        clip_started = (Stage.CLIP, Status.STARTED)
        if isinstance(event, SceneEvent) and (event.stage, event.status) == clip_started:
            encoding.set()

    task = asyncio.create_task(render_plan(plan, settings, tmp_path / "c.mp4", on_event=on_event))
    await asyncio.wait_for(encoding.wait(), timeout=60)
    # The clip's ffmpeg starts once its zoom is planned (in a thread): poll, with a deadline.
    deadline = time.monotonic() + 30
    while "ffmpeg" not in child_processes() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert "ffmpeg" in child_processes()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert child_processes() == []
    assert not (tmp_path / "c.mp4").exists()


def test_clip_argv_is_an_argument_list_with_escaped_values(tmp_path: Path) -> None:
    from pipeline.aspect import Size
    from pipeline.config import VideoConfig
    from pipeline.video import ClipSpec

    Image.new("RGB", (576, 1024)).save(tmp_path / "a;b'c.png")  # the zoom reads its size
    spec = ClipSpec(tmp_path / "a;b'c.png", tmp_path / "x.wav", 2.0, Size(1080, 1920),
                    VideoConfig())  # fmt: skip
    argv = clip_argv(spec, tmp_path / "out.mp4")
    assert argv[0] == "ffmpeg"
    assert str(tmp_path / "a;b'c.png") in argv  # a path is one argument, never parsed
    graph = argv[argv.index("-filter_complex") + 1]
    assert "scale@zoom" in graph and "a;b'c" not in graph
    assert argv[argv.index("-t") + 1] == f"{72 / 30:.6f}"
