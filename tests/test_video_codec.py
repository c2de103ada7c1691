"""The clip's codec settings and frame making: what reaches ffmpeg's argv, and what the
encoder really did (x264 writes its settings into the stream it makes)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from bench.media import photo
from pipeline.aspect import Size
from pipeline.config import VideoConfig
from pipeline.video import ClipSpec, clip_argv, encode_clip, zoom_commands_path
from tests.fakes.audio import make_wav

from .media import ffprobe, packet_count


def _spec(tmp_path: Path) -> ClipSpec:
    photo(576, 1024, seed=2).save(tmp_path / "a.png")  # the zoom's plan needs its size
    return ClipSpec(tmp_path / "a.png", tmp_path / "a.wav", 1.0, Size(1080, 1920), VideoConfig())


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_codec_settings_reach_the_argv(tmp_path: Path) -> None:
    argv = clip_argv(_spec(tmp_path), tmp_path / "out.mp4")
    assert _option(argv, "-vcodec") == "libx264"
    assert _option(argv, "-preset") == "veryfast" and _option(argv, "-crf") == "21"
    # The preset as it is: x264 options on top of it measured no faster (README, Benchmarks).
    assert "-x264-params" not in argv
    # No thread count: ffmpeg and x264 take every core (one thread per clip beside another
    # measured no better).
    assert "-threads" not in argv


def test_the_zoom_is_a_crop_one_swscale_resample_and_a_crop_per_frame(tmp_path: Path) -> None:
    spec, out = _spec(tmp_path), tmp_path / "out.mp4"
    graph = _option(clip_argv(spec, out), "-filter_complex")
    assert "perspective" not in graph and "zoompan" not in graph
    # sendcmd reads the frame-by-frame sizes written beside the clip, one line per frame.
    commands = zoom_commands_path(out)
    assert f"sendcmd=f={commands}" in graph
    assert len(commands.read_text().splitlines()) == spec.frames
    zoom = graph.index("crop@zoom=")
    scale = graph.index("scale@zoom=", zoom)
    # one swscale thread: swscale is set up for every frame, and each thread would be too
    assert graph.index("threads=1", scale) < graph.index("crop@frame=1080:1920", scale)


async def test_encode_clip_leaves_no_commands_behind(tmp_path: Path) -> None:
    # The commands file's path is in the filter graph: a folder name the graph would misread.
    folder = tmp_path / "a:b,c'd[e];f\\g=h"
    folder.mkdir()
    photo(144, 256, seed=4).save(folder / "a.png")
    (folder / "a.wav").write_bytes(make_wav(0.4))
    spec = ClipSpec(folder / "a.png", folder / "a.wav", 0.4, Size(270, 480), VideoConfig())
    await encode_clip(spec, folder / "clip.mp4", scene=1)
    assert packet_count(folder / "clip.mp4") == spec.frames
    assert not zoom_commands_path(folder / "clip.mp4").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a.wav", "clip.mp4"]


def _made(tmp_path: Path, build: object, name: str, spec: ClipSpec) -> Path:
    out = tmp_path / f"{name}.mp4"
    assert callable(build)
    subprocess.run(build(spec, out), check=True, timeout=120)
    return out


def test_the_encoder_used_the_settings(tmp_path: Path) -> None:
    photo(144, 256, seed=6).save(tmp_path / "a.png")
    (tmp_path / "a.wav").write_bytes(make_wav(0.6))
    spec = ClipSpec(tmp_path / "a.png", tmp_path / "a.wav", 0.6, Size(270, 480), VideoConfig())
    out = _made(tmp_path, clip_argv, "clip", spec)
    probe = ffprobe(out)
    assert probe.stream("video")["width"] == 270 and probe.stream("video")["height"] == 480
    assert probe.stream("video")["profile"] == "High"
    assert packet_count(out) == spec.frames
    # x264 writes the settings it ran with into an SEI message of the stream.
    found = re.search(rb"options: ([ -~]+)", out.read_bytes())
    assert found is not None
    used = dict(item.split("=", 1) for item in found.group(1).decode().split())
    assert used["crf"] == "21.0" and used["keyint"] == "60"
    assert used["subme"] == "2" and used["me"] == "hex"  # the veryfast preset's
