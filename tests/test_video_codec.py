"""The clip's codec settings and frame making: what reaches ffmpeg's argv, and what the
encoder really did (x264 writes its settings into the stream it makes)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from bench.encode import recipe2_argv
from bench.media import photo
from pipeline.aspect import Size
from pipeline.config import VideoConfig
from pipeline.video import ClipSpec, clip_argv
from tests.fakes.audio import make_wav

from .media import ffprobe, packet_count


def _spec(tmp_path: Path) -> ClipSpec:
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


def test_one_scale_per_frame_after_the_zoom_and_no_zoompan(tmp_path: Path) -> None:
    graph = _option(clip_argv(_spec(tmp_path), tmp_path / "out.mp4"), "-filter_complex")
    zoom = graph.index("perspective=eval=frame")
    assert graph.index("scale=1080:1920:flags=bicubic", zoom) > zoom
    assert "zoompan" not in graph


def _made(tmp_path: Path, build: object, name: str, spec: ClipSpec) -> Path:
    out = tmp_path / f"{name}.mp4"
    assert callable(build)
    subprocess.run(build(spec, out), check=True, timeout=120)
    return out


def test_scale_makes_the_bytes_zoompan_made(tmp_path: Path) -> None:
    """`scale` replaced zoompan (which made a swscale context per frame) with the same
    resampler, so a clip is the same file as before: the cache's clips stay valid."""
    photo(144, 256, seed=4).save(tmp_path / "a.png")
    (tmp_path / "a.wav").write_bytes(make_wav(0.8))
    spec = ClipSpec(tmp_path / "a.png", tmp_path / "a.wav", 0.8, Size(270, 480), VideoConfig())
    now = _made(tmp_path, clip_argv, "now", spec)
    before = _made(tmp_path, recipe2_argv, "before", spec)
    assert packet_count(now) == spec.frames
    assert hashlib.sha256(now.read_bytes()).digest() == hashlib.sha256(before.read_bytes()).digest()


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
