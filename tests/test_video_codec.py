"""The clip's codec settings: what reaches ffmpeg's argv, and what the encoder
really did (x264 writes its settings into the stream it makes)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pipeline.aspect import Size
from pipeline.config import VideoConfig
from pipeline.video import X264_PARAMS, ClipSpec, clip_argv, codec_args
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
    assert _option(argv, "-x264-params") == X264_PARAMS
    assert dict(p.split("=") for p in X264_PARAMS.split(":")) == {"me": "dia", "weightp": "0"}
    # No thread count: ffmpeg and x264 take every core (one thread per clip beside another
    # measured no better; see README, Benchmarks).
    assert "-threads" not in argv


def test_one_scale_per_frame_after_the_zoom_and_no_zoompan(tmp_path: Path) -> None:
    graph = _option(clip_argv(_spec(tmp_path), tmp_path / "out.mp4"), "-filter_complex")
    zoom = graph.index("perspective=eval=frame")
    assert graph.index("scale=1080:1920:flags=bicubic", zoom) > zoom
    assert "zoompan" not in graph


def test_seams_and_clips_share_the_codec_settings() -> None:
    # pipeline/transitions.py encodes crossfade seams with codec_args too: the join of clips
    # and seams stays a stream copy only if both were encoded alike.
    assert codec_args(VideoConfig())["x264-params"] == X264_PARAMS


def test_the_encoder_used_the_settings(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (144, 256), (90, 120, 200)).save(tmp_path / "a.png")
    (tmp_path / "a.wav").write_bytes(make_wav(0.6))
    spec = ClipSpec(tmp_path / "a.png", tmp_path / "a.wav", 0.6, Size(270, 480), VideoConfig())
    out = tmp_path / "clip.mp4"
    subprocess.run(clip_argv(spec, out), check=True, timeout=120)
    probe = ffprobe(out)
    assert probe.stream("video")["width"] == 270 and probe.stream("video")["height"] == 480
    assert packet_count(out) == spec.frames
    # x264 writes the settings it ran with into an SEI message of the stream.
    found = re.search(rb"options: ([ -~]+)", out.read_bytes())
    assert found is not None
    used = dict(item.split("=", 1) for item in found.group(1).decode().split())
    assert used["me"] == "dia" and used["weightp"] == "0"
    assert used["subme"] == "2"  # the rest is still the veryfast preset's
