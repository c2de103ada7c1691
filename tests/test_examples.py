"""The scripts in examples/ keep working: each parses and plans with its config, and the richest
one renders with what it claims to show (two voices, seeds, crossfades, captions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.plan import RenderPlan, plan_render
from pipeline.script import parse_script

from .media import ffprobe
from .test_cli import reelbot

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in {".md", ".json", ".txt"})


def settings_for(script: Path) -> Settings:
    """An example's config sits beside it under the same name (`dialogue.toml`), if it has one."""
    config = script.with_suffix(".toml")
    return load_settings(config if config.exists() else None)


def plan_of(script: Path) -> RenderPlan:
    settings = settings_for(script)
    parsed = parse_script(script.read_bytes(), filename=script.name, limits=settings.limits)
    return plan_render(parsed, settings)


def test_the_examples_cover_every_script_format() -> None:
    assert {p.suffix for p in SCRIPTS} == {".md", ".json", ".txt"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_example_parses_and_plans(script: Path) -> None:
    plan = plan_of(script)
    assert len(plan.scenes) >= 3
    assert all(scene.narration and scene.image.prompt for scene in plan.scenes)
    assert plan.title and plan.title != "Untitled"


def test_the_dialogue_example_shows_what_it_says() -> None:
    script = EXAMPLES / "dialogue.md"
    plan = plan_of(script)
    settings = settings_for(script)
    parsed = parse_script(script.read_bytes(), filename=script.name)
    assert len({scene.voice for scene in plan.scenes}) == 2  # a scene speaks in its own voice
    assert all(scene.seed is not None for scene in parsed.scenes)  # seed: on every scene
    assert [scene.image.seed for scene in plan.scenes] == [s.seed for s in parsed.scenes]
    assert settings.video.crossfade > 0
    assert settings.captions.enabled is True and plan.captions
    assert str(plan.frame) == "1920x1080"


def test_the_dialogue_example_renders(tmp_path: Path) -> None:
    """Rendered as the example says (its config), at 10 fps to keep it cheap."""
    out, data = tmp_path / "dialogue.mp4", tmp_path / "data"
    pad = 0.1
    fast = {"REELBOT_VIDEO__FPS": "10", "REELBOT_VIDEO__PAD_SECONDS": str(pad),
            "REELBOT_SOUND__NORMALIZE": "false"}  # fmt: skip
    done = reelbot("render", "examples/dialogue.md", "--config", "examples/dialogue.toml",
                   "-o", str(out), data=data, **fast)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 scenes, 1920x1080" in done.stderr
    probe = ffprobe(out)
    video, audio = probe.stream("video"), probe.stream("audio")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1920, 1080)
    assert audio["codec_name"] == "aac"
    # Each of the two seams overlaps its scenes by the config's 0.5 s crossfade.
    narrations = sorted((data / "cache" / "audio").rglob("*.wav"))
    assert len(narrations) == 3
    cuts = sum(ffprobe(wav).duration + pad for wav in narrations)
    assert probe.duration == pytest.approx(cuts - 2 * 0.5, abs=0.25)
    # Captions were made for every scene (captions are off by default for 16:9).
    assert len(list((data / "cache" / "captions").rglob("*.ass"))) == 3


def test_the_own_media_example_renders(tmp_path: Path) -> None:
    """examples/own-media renders on the embedded defaults: its picture and its clip (found
    beside the script) and a generated scene, joined at the 9:16 frame with one sound track."""
    out, data = tmp_path / "own-media.mp4", tmp_path / "data"
    fast = {"REELBOT_VIDEO__FPS": "10", "REELBOT_SOUND__NORMALIZE": "false"}
    done = reelbot("render", "examples/own-media/own-media.md", "-o", str(out), data=data, **fast)
    assert done.returncode == 0, done.stderr
    probe = ffprobe(out)
    video, audio = probe.stream("video"), probe.stream("audio")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1080, 1920)
    assert audio["codec_name"] == "aac"
    narrations = sorted((data / "cache" / "audio").rglob("*.wav"))
    assert len(narrations) == 3
    speech = sum(ffprobe(wav).duration for wav in narrations)
    assert speech < probe.duration < speech + 3 * 1.5  # each scene lasts its narration, padded
    # The picture and the clip were copied into the cache by content (named for what their
    # bytes are: a QuickTime .mov is the MP4 family); nothing else was.
    assert sorted(p.suffix for p in (data / "cache" / "media").rglob("*.*")) == [".jpg", ".mp4"]
