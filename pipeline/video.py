"""Clips and the final video, built with ffmpeg-python and run as argv lists.

Every clip is encoded with the same codec parameters, so the final join is a stream copy
through the concat demuxer: nothing is re-encoded when the clips are joined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from .aspect import Size
from .config import VideoConfig
from .proc import run_program

__all__ = [
    "AUDIO_RATE",
    "ClipSpec",
    "clip_argv",
    "clip_frames",
    "concat_argv",
    "encode_clip",
    "join_clips",
    "still_argv",
]

AUDIO_RATE = 48000
# The image is scaled up once, before the zoom, so the crop moves in half-pixel steps of the
# output frame: the zoom stays smooth instead of jittering between whole pixels.
ZOOM_OVERSAMPLE = 2


@dataclass(frozen=True)
class ClipSpec:
    image: Path
    audio: Path
    audio_seconds: float
    frame: Size
    config: VideoConfig

    @property
    def frames(self) -> int:
        return clip_frames(self.audio_seconds, self.config)

    @property
    def seconds(self) -> float:
        return self.frames / self.config.fps


def clip_frames(audio_seconds: float, config: VideoConfig) -> int:
    return max(1, math.ceil((audio_seconds + config.pad_seconds) * config.fps))


def _codec_args(config: VideoConfig) -> dict[str, object]:
    # Identical for every clip: the concat demuxer can then join them by stream copy.
    return {
        "vcodec": "libx264",
        "preset": config.preset,
        "crf": config.crf,
        "pix_fmt": "yuv420p",
        "profile:v": "high",
        "r": config.fps,
        "g": config.fps * 2,
        "video_track_timescale": 90000,
        "acodec": "aac",
        "audio_bitrate": config.audio_bitrate,
        "ar": AUDIO_RATE,
        "ac": 2,
    }


def _audio(spec: ClipSpec, seconds: float) -> ffmpeg.nodes.FilterableStream:
    return ffmpeg.input(str(spec.audio)).audio.filter("apad", whole_dur=f"{seconds:.6f}")


def clip_argv(spec: ClipSpec, out: Path) -> list[str]:
    """A still image with a slow centred zoom, as long as its narration plus the pad."""
    width, height = spec.frame
    frames = spec.frames
    big_w, big_h = width * ZOOM_OVERSAMPLE, height * ZOOM_OVERSAMPLE
    step = (spec.config.zoom - 1.0) / max(1, frames - 1)
    video = (
        ffmpeg.input(str(spec.image))
        .video.filter("scale", big_w, big_h, force_original_aspect_ratio="increase",
                      flags="lanczos")
        .filter("crop", big_w, big_h)
        .filter("setsar", 1)
        .filter(
            "zoompan",
            z=f"1+{step:.9f}*on",
            x="(iw-iw/zoom)/2",
            y="(ih-ih/zoom)/2",
            d=frames,
            s=f"{width}x{height}",
            fps=spec.config.fps,
        )
    )  # fmt: skip
    return _output(video, spec, out)


def still_argv(spec: ClipSpec, out: Path) -> list[str]:
    """The encode floor: the same image and codec settings, with no motion (benchmarks)."""
    width, height = spec.frame
    video = (
        ffmpeg.input(str(spec.image), loop=1, framerate=spec.config.fps)
        .video.filter("scale", width, height, force_original_aspect_ratio="increase")
        .filter("crop", width, height)
        .filter("setsar", 1)
    )
    return _output(video, spec, out)


def _output(video: ffmpeg.nodes.FilterableStream, spec: ClipSpec, out: Path) -> list[str]:
    seconds = spec.seconds
    stream = ffmpeg.output(
        video,
        _audio(spec, seconds),
        str(out),
        t=f"{seconds:.6f}",
        f="mp4",
        **_codec_args(spec.config),
    )
    argv: list[str] = (
        stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    return argv


def concat_argv(list_file: Path, out: Path, *, title: str) -> list[str]:
    argv: list[str] = (
        ffmpeg.input(str(list_file), f="concat", safe=0)
        .output(str(out), c="copy", movflags="+faststart", f="mp4", metadata=f"title={title}")
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    return argv


def concat_list(clips: list[Path]) -> str:
    """An ffconcat list; single quotes in paths are escaped the way the demuxer reads them."""
    lines = ["ffconcat version 1.0"]
    for clip in clips:
        quoted = str(clip.resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    return "\n".join(lines) + "\n"


async def encode_clip(spec: ClipSpec, out: Path, *, scene: int) -> None:
    await run_program(
        clip_argv(spec, out), what=f"ffmpeg (clip of scene {scene})", timeout=spec.config.timeout
    )


async def join_clips(clips: list[Path], out: Path, *, title: str, timeout: float) -> None:
    list_file = out.with_name(out.name + ".ffconcat")
    list_file.write_text(concat_list(clips), encoding="utf-8")
    try:
        await run_program(concat_argv(list_file, out, title=title), what="ffmpeg (join)",
                          timeout=timeout)  # fmt: skip
    finally:
        list_file.unlink(missing_ok=True)
