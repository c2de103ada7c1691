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
    "codec_args",
    "concat_argv",
    "encode_clip",
    "encode_media_clip",
    "join_clips",
    "media_clip_argv",
    "poster_argv",
    "still_argv",
]

AUDIO_RATE = 48000
# The Ken Burns zoom is not a crop: a crop (zoompan's own zoom) can only move in whole pixels
# of its input, so even on a 2x oversampled picture the motion stepped by up to a pixel from
# one frame to the next. `perspective` resamples every frame at the exact zoom (1/256 pixel),
# at the picture's own resolution (capped at the frame's), which costs half what it would at
# the frame's; `scale` (one swscale context for the whole clip) then brings each frame to the
# output size. `make bench` measures the smoothness, the SSIM against the exact zoom and the
# cost against MoviePy and against the encoder alone.
ZOOM_INTERPOLATION = "linear"  # perspective's; "cubic" is sharper per frame and costs ~1.5x
UPSCALE = "bicubic"  # swscale's, from the picture to the frame (zoompan's own, before)


@dataclass(frozen=True)
class ClipSpec:
    image: Path
    audio: Path
    audio_seconds: float
    frame: Size
    config: VideoConfig
    # An ASS subtitle file burned in after the zoom (pipeline/captions.py writes it).
    captions: Path | None = None
    # Frame numbers that must be IDR frames: where a crossfade seam cuts the clip.
    keyframes: tuple[int, ...] = ()

    @property
    def frames(self) -> int:
        return clip_frames(self.audio_seconds, self.config)

    @property
    def seconds(self) -> float:
        return self.frames / self.config.fps


def clip_frames(audio_seconds: float, config: VideoConfig) -> int:
    return max(1, math.ceil((audio_seconds + config.pad_seconds) * config.fps))


def codec_args(config: VideoConfig) -> dict[str, object]:
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
    return _output(_ken_burns(spec), spec, out)


def _picture(spec: ClipSpec) -> ffmpeg.nodes.FilterableStream:
    """The image as one yuv420p frame of the output's shape, decoded and converted once."""
    width, height = spec.frame
    return (
        ffmpeg.input(str(spec.image), framerate=spec.config.fps)
        # The largest centred box of the frame's shape (even sides), then no larger than the
        # frame: the zoom works on the picture's own pixels, never on an upscaled copy.
        .video.filter("crop", f"trunc(min(iw,ih*{width}/{height})/2)*2",
                      f"trunc(min(ih,iw*{height}/{width})/2)*2")
        .filter("scale", f"min(iw,{width})", -2, flags="lanczos")
        .filter("setsar", 1)
        .filter("format", "yuv420p")
    )  # fmt: skip


def _ken_burns(spec: ClipSpec) -> ffmpeg.nodes.FilterableStream:
    """`spec.frames` frames zooming linearly from 1 to `config.zoom` about the centre.

    Each frame n shows the centred rectangle of the picture W/z(n) by H/z(n) (in the picture's
    pixels, W x H), resampled by `perspective` at sub-pixel precision, so the motion is smooth
    however slow it is; `scale` then brings each frame to the output size."""
    width, height = spec.frame
    frames = spec.frames
    rate = (spec.config.zoom - 1.0) / max(1, frames - 1)
    z = f"(1+{rate:.12g}*in)"  # `in`: the frame number
    # The corners of that rectangle; its centre stays on the picture's centre ((W-1)/2, ...).
    left, top = f"(W-1)/2*(1-1/{z})", f"(H-1)/2*(1-1/{z})"
    right, bottom = f"{left}+W/{z}", f"{top}+H/{z}"
    return (
        _picture(spec)
        .filter("loop", loop=frames - 1, size=1)
        .filter("perspective", x0=left, y0=top, x1=right, y1=top, x2=left, y2=bottom,
                x3=right, y3=bottom, interpolation=ZOOM_INTERPOLATION, eval="frame")
        .filter("scale", width, height, flags=UPSCALE)
        .filter("setsar", 1)
        .filter("setpts", f"N/({spec.config.fps}*TB)")
    )  # fmt: skip


def still_argv(spec: ClipSpec, out: Path) -> list[str]:
    """The encode floor (benchmarks): the same picture and codec settings, with no motion.

    The picture is decoded and scaled once and the frame repeated, so nothing but the encoder
    works per frame."""
    width, height = spec.frame
    video = (
        ffmpeg.input(str(spec.image), framerate=spec.config.fps)
        .video.filter("scale", width, height, force_original_aspect_ratio="increase",
                      flags="lanczos")
        .filter("crop", width, height)
        .filter("setsar", 1)
        .filter("format", "yuv420p")
        .filter("loop", loop=spec.frames - 1, size=1)
        .filter("setpts", f"N/({spec.config.fps}*TB)")
    )  # fmt: skip
    return _output(video, spec, out)


def _output(video: ffmpeg.nodes.FilterableStream, spec: ClipSpec, out: Path) -> list[str]:
    seconds = spec.seconds
    if spec.captions is not None:
        # libass draws onto the moving picture, so the captions themselves stay still. The
        # path is escaped for the filter graph by ffmpeg-python (both levels); it is absolute,
        # so nothing in it is read as an option.
        video = video.filter("ass", filename=str(spec.captions.resolve()))
    cuts: dict[str, object] = {}
    if spec.keyframes:  # pipeline/transitions.py splits the clip there by stream copy
        forced = "+".join(f"eq(n,{n})" for n in spec.keyframes)
        cuts = {"force_key_frames": f"expr:{forced}", "forced-idr": 1}
    stream = ffmpeg.output(
        video,
        _audio(spec, seconds),
        str(out),
        t=f"{seconds:.6f}",
        f="mp4",
        **codec_args(spec.config),
        **cuts,
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


# ------------------------------------------------------------------ a scene's own video clip


def media_clip_argv(spec: ClipSpec, clip: Path, out: Path) -> list[str]:
    """A scene's own video clip instead of a picture: looped (or cut) to the scene's length,
    scaled to cover the frame and cropped to it, with the narration as its sound (its own is
    dropped here; the sound pass may mix it in). Encoded with `codec_args`, like every clip,
    so the join stays a stream copy; `spec.image` is not read."""
    width, height = spec.frame
    video = (
        ffmpeg.input(str(clip), stream_loop=-1)
        .video.filter("setpts", "PTS-STARTPTS")
        .filter("fps", spec.config.fps)
        .filter("scale", width, height, force_original_aspect_ratio="increase",
                flags="bicubic")
        .filter("crop", width, height)
        .filter("setsar", 1)
        .filter("format", "yuv420p")
    )  # fmt: skip
    return _output(video, spec, out)


def poster_argv(clip: Path, out: Path, *, at: float) -> list[str]:
    """One frame of a clip, `at` seconds in, as a picture (the scene's image in a storyboard
    or a review thread)."""
    argv: list[str] = (
        ffmpeg.input(str(clip), ss=f"{at:.3f}")
        .video.output(str(out), vframes=1, f="image2", vcodec="png")
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    return argv


async def encode_media_clip(spec: ClipSpec, clip: Path, out: Path, *, scene: int) -> None:
    await run_program(media_clip_argv(spec, clip, out), what=f"ffmpeg (clip of scene {scene})",
                      timeout=spec.config.timeout)  # fmt: skip
