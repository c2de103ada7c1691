"""Clips and the final video, built with ffmpeg-python and run as argv lists.

Every clip is encoded with the same codec parameters, so the final join is a stream copy
through the concat demuxer: nothing is re-encoded when the clips are joined.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
from PIL import Image

from .aspect import Size
from .config import VideoConfig
from .errors import MediaError
from .proc import run_program
from .zoom import CROP as ZOOM_CROP
from .zoom import FRAME as FRAME_CROP
from .zoom import PAD, SCALE_HEIGHT, plan_zoom, scale_width
from .zoom import SCALE as ZOOM_SCALE
from .zoom import commands as zoom_commands

__all__ = [
    "AUDIO_RATE",
    "ClipSpec",
    "clip_argv",
    "clip_frames",
    "clip_seconds",
    "codec_args",
    "concat_argv",
    "encode_clip",
    "encode_media_clip",
    "join_clips",
    "media_clip_argv",
    "poster_argv",
    "still_argv",
    "zoom_commands_path",
]

AUDIO_RATE = 48000
# The Ken Burns zoom is not zoompan's crop, which moves in whole pixels of its input (even on a
# 2x oversampled picture the motion stepped by up to a pixel from frame to frame): every frame
# shows the exact centred rectangle of the picture, to a fiftieth of a pixel. swscale does the
# resampling, with a crop and an output size chosen for each frame so that its whole-number
# sizes give the exact zoom (pipeline/zoom.py); `sendcmd` feeds them to the filters. `make
# bench` measures the smoothness, the SSIM against the exact zoom and the cost against MoviePy
# and against the encoder alone.
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
        return clip_seconds(self.audio_seconds, self.config)


def clip_frames(audio_seconds: float, config: VideoConfig) -> int:
    return max(1, math.ceil((audio_seconds + config.pad_seconds) * config.fps))


def clip_seconds(audio_seconds: float, config: VideoConfig) -> float:
    """How long a scene's clip lasts: its narration and the pad, in whole frames."""
    return clip_frames(audio_seconds, config) / config.fps


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
    """A still image with a slow centred zoom, as long as its narration plus the pad.

    Writes the zoom's commands beside `out` (`zoom_commands_path`): ffmpeg reads them while it
    runs the argv; `encode_clip` deletes them afterwards."""
    return _output(_ken_burns(spec, zoom_commands_path(out)), spec, out)


def picture_box(image: Size, frame: Size) -> tuple[Size, Size]:
    """The picture a clip zooms into: the largest centred box of `image` of the frame's shape
    (even sides), then scaled down to the frame's width if it is wider. Returns (box, picture)."""
    width = min(image.width, image.height * frame.width // frame.height) // 2 * 2
    height = min(image.height, image.width * frame.height // frame.width) // 2 * 2
    if width <= frame.width:
        return Size(width, height), Size(width, height)
    return Size(width, height), Size(
        frame.width, max(2, round(height * frame.width / width / 2) * 2)
    )


def image_size(path: Path) -> Size:
    """The size of the picture at `path` (its header only is read)."""
    try:
        with Image.open(path) as opened:
            return Size(*opened.size)
    except (OSError, ValueError) as exc:  # Pillow's word for "not a picture I can read"
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a picture"
        raise MediaError(f"the picture {path.name} cannot be read ({why.lower()})",
                         detail=str(exc)) from exc  # fmt: skip


def zoom_commands_path(out: Path) -> Path:
    """The `sendcmd` file of the clip `out`, beside it."""
    return out.with_name(out.name + ".zoom")


def _ken_burns(spec: ClipSpec, commands_file: Path) -> ffmpeg.nodes.FilterableStream:
    """`spec.frames` frames zooming linearly from 1 to `config.zoom` about the centre.

    Each frame n shows the centred rectangle of the picture W/z(n) by H/z(n) (in the picture's
    pixels, W x H) at the frame's size, made by one crop, one swscale resample and one crop to
    the frame, whose sizes `plan_zoom` picks for that frame; writes their commands to
    `commands_file`."""
    image = image_size(spec.image)
    box, picture = picture_box(image, spec.frame)
    try:
        if min(picture) < 2:
            raise ValueError("nothing left of the frame's shape")
        plan = plan_zoom(picture, spec.frame, spec.frames, spec.config.zoom)
    except ValueError as exc:  # only for pictures of a few pixels
        raise MediaError(
            f"the picture {spec.image.name} ({image.width}×{image.height} px) is "
            f"too small to fill a {spec.frame} frame",
            detail=str(exc),
        ) from exc
    commands_file.write_text(zoom_commands(plan, spec.config.fps), encoding="ascii")
    canvas, first = plan.canvas, plan.frames[0]
    source = (
        ffmpeg.input(str(spec.image), framerate=spec.config.fps)
        .video.filter("crop", box.width, box.height)
        .filter("scale", picture.width, picture.height, flags="lanczos")
        .filter("setsar", 1)
        .filter("format", "yuv444p")  # crops at odd offsets: no chroma subsampling yet
    )  # fmt: skip
    if len(canvas.copies) == 1:
        video = _smeared(source, picture, canvas.width)
    else:
        split = source.split()
        video = ffmpeg.filter(
            [_smeared(split[0], picture, canvas.width)]
            + [_smeared(split[n].filter("scale", copy.width, copy.height, flags="lanczos"),
                        copy, canvas.width)
               for n, copy in enumerate(canvas.copies[1:], 1)],
            "vstack", inputs=len(canvas.copies),
        )  # fmt: skip
    width, height = spec.frame
    return (
        video.filter("loop", loop=spec.frames - 1, size=1)
        .filter("setpts", f"N/({spec.config.fps}*TB)")
        .filter("sendcmd", f=str(commands_file.resolve()))
        .filter(ZOOM_CROP, first.x.size, first.y.size, first.x.start, first.y.start)
        # One thread: swscale is set up again for every frame, and so would each of its
        # threads be (3.4 ms a frame at 2 threads; at one, nothing measurable). eval=frame:
        # one command gives the width and the height (zoom.SCALE_HEIGHT), and `scale` sets
        # up once for both (a command alone re-evaluates only the expression it sets).
        .filter(ZOOM_SCALE, scale_width(first.x.scaled, first.y.scaled), SCALE_HEIGHT,
                flags=UPSCALE, threads=1, eval="frame")
        # Straight from the scale to the last crop: a filter between them would keep telling
        # the crop the first frame's size (a link's size follows only its own filter's
        # reconfiguration), and the crop would clamp its offsets to that. `format` after the
        # crop still makes the scale's output yuv420p (crop passes formats through).
        .filter(FRAME_CROP, width, height, first.x.skip, first.y.skip)
        .filter("format", "yuv420p")
        .filter("setsar", 1)
    )  # fmt: skip


def _smeared(video: ffmpeg.nodes.FilterableStream, size: Size,
             width: int) -> ffmpeg.nodes.FilterableStream:  # fmt: skip
    """`video` (of `size`) with PAD pixels of its own edges around it, and more on the right
    up to `width`: a crop may reach past the picture, and sees what its edge would show."""
    right = width - PAD - size.width
    return video.filter("pad", width, size.height + 2 * PAD, PAD, PAD).filter(
        "fillborders", left=PAD, right=right, top=PAD, bottom=PAD, mode="smear"
    )


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
    # Planning the zoom is Python work (~0.1 s for 8 s of video, ~1 s for a minute): in a
    # thread, so the event loop (which hands the image slot on) is not held up meanwhile.
    planning = asyncio.ensure_future(asyncio.to_thread(clip_argv, spec, out))
    try:
        argv = await asyncio.shield(planning)
        await run_program(argv, what=f"ffmpeg (clip of scene {scene})",
                          timeout=spec.config.timeout)  # fmt: skip
    finally:
        if not planning.done():  # cancelled while planning: the thread writes the file last
            await asyncio.wait([planning])
        zoom_commands_path(out).unlink(missing_ok=True)


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
