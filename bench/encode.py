"""Clip encoding against MoviePy and against the encoder alone, its quality (SSIM, size),
and the smoothness of the zoom.

Each round runs every recipe once, one after the other, and every ratio is taken between
runs of the same round; the median over rounds is reported. The floor is `still_argv`: the
same picture, duration and codec settings as a clip, with no motion (the picture decoded and
scaled once, the frame repeated). The other rows:

- "codec only": the encoder alone, fed the Ken Burns frames already made (raw, from a file):
  what coding that motion costs with these settings, whatever makes the frames. No zoom
  recipe can go below it.
- "reading the frames": codec only's input alone (the raw frames read and dropped, nothing
  encoded): what codec only spends outside the encoder, taken off it in the bound.
- "resample only": the floor with one more step per frame: the picture resampled to the frame
  size by swscale (the fastest resampler ffmpeg has), the same result every frame, so the
  encoder has no motion to code. Its excess over the floor is the least any zoom must spend
  making its frames, whatever the zoom is; with "codec only" it bounds every zoom recipe.
- "previous": the recipe before the sub-pixel zoom (zoompan on a 2x picture), whose steps
  the smoothness figures show.
- "recipe 2": the clip recipe as it was before issue 19 (perspective, then zoompan, at the
  plain x264 preset): the yardstick of the shipped recipe's SSIM and size.
- "MoviePy": the same scene made the way MoviePy-based tools make it (bench/moviepy_clip.py),
  in its own Python process, with MoviePy's own ffmpeg: the yardstick of the speed.

Quality: the SSIM of each moving recipe's clip against the exact zoom rendered losslessly
(bench/quality.py), and the clip's size.

The recipes use pipeline.video's private `_output` (and `_ken_burns`), so that every one of
them has exactly the clip's output options.

Smoothness is measured, not looked at: a chart of small dots goes through the recipe (at crf 1
so the encoder's noise does not blur the figure), each dot's centroid is found in every frame
to ~0.01 pixel, and its path is compared with the exact path of the zoom. "step error" is the
largest difference, over all dots and frames, between a dot's move from one frame to the next
and the exact move; "path error" the largest distance from the exact path (less the dot's
constant offset). Integer rounding of the zoom shows up as steps of a sizeable fraction of a
pixel; an exact zoom leaves a few hundredths.
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ffmpeg

from pipeline.aspect import Aspect, Size
from pipeline.config import VideoConfig
from pipeline.video import (
    ClipSpec,
    _ken_burns,
    _output,
    clip_argv,
    still_argv,
    zoom_commands_path,
)
from tests.fakes.audio import make_wav

from .measure import Timing, median, run_timed
from .media import dot_chart, photo
from .quality import render_reference, ssim

ArgvBuilder = Callable[[ClipSpec, Path], list[str]]


def previous_clip_argv(spec: ClipSpec, out: Path) -> list[str]:
    """The Ken Burns recipe before bench/ existed, kept here to compare against: the picture
    scaled to 2x the frame, then zoompan, whose crop moves in whole pixels of that picture."""
    width, height = spec.frame
    frames = spec.frames
    big_w, big_h = width * 2, height * 2
    step = (spec.config.zoom - 1.0) / max(1, frames - 1)
    video = (
        ffmpeg.input(str(spec.image))
        .video.filter("scale", big_w, big_h, force_original_aspect_ratio="increase",
                      flags="lanczos")
        .filter("crop", big_w, big_h)
        .filter("setsar", 1)
        .filter("zoompan", z=f"1+{step:.9f}*on", x="(iw-iw/zoom)/2", y="(ih-ih/zoom)/2",
                d=frames, s=f"{width}x{height}", fps=spec.config.fps)
    )  # fmt: skip
    return _output(video, spec, out)


ZOOM_INTERPOLATION = "linear"  # recipe 2's `perspective` ("cubic" was sharper, ~1.5x the cost)


def _picture(spec: ClipSpec) -> ffmpeg.nodes.FilterableStream:
    """Recipe 2's picture: one yuv420p frame of the output's shape, decoded and converted once."""
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


def recipe2_argv(spec: ClipSpec, out: Path) -> list[str]:
    """The clip recipe before issue 19: `perspective` (sub-pixel, bilinear) at the picture's
    size, then zoompan (which makes a new swscale context for every frame) to the frame size.
    The shipped `clip_argv` makes each frame with one swscale resample instead, at sizes
    chosen so that it is the exact zoom (pipeline/zoom.py)."""
    width, height = spec.frame
    frames = spec.frames
    rate = (spec.config.zoom - 1.0) / max(1, frames - 1)
    z = f"(1+{rate:.12g}*in)"
    left, top = f"(W-1)/2*(1-1/{z})", f"(H-1)/2*(1-1/{z})"
    right, bottom = f"{left}+W/{z}", f"{top}+H/{z}"
    video = (
        _picture(spec)
        .filter("loop", loop=frames - 1, size=1)
        .filter("perspective", x0=left, y0=top, x1=right, y1=top, x2=left, y2=bottom,
                x3=right, y3=bottom, interpolation=ZOOM_INTERPOLATION, eval="frame")
        .filter("zoompan", d=1, s=f"{width}x{height}", fps=spec.config.fps)
        .filter("setsar", 1)
    )  # fmt: skip
    return _output(video, spec, out)


# `make bench` installs MoviePy (the `bench` extra) here: it pins an older Pillow than ours.
MOVIEPY_VENV = Path(__file__).resolve().parents[1] / ".venv" / "moviepy"


def moviepy_python() -> str | None:
    """A Python that has MoviePy: this one, else the bench's own MoviePy venv; or None."""
    if importlib.util.find_spec("moviepy") is not None:
        return sys.executable
    python = MOVIEPY_VENV / "bin" / "python"
    return str(python) if python.exists() else None


def moviepy_argv(python: str) -> ArgvBuilder:
    """The MoviePy row: bench/moviepy_clip.py (it imports nothing of reelbot) run by
    `python`, a process of its own."""

    def build(spec: ClipSpec, out: Path) -> list[str]:
        return [python, str(Path(__file__).with_name("moviepy_clip.py")), str(spec.image),
                str(spec.audio), f"{spec.seconds:.6f}", str(spec.frame.width),
                str(spec.frame.height), f"{spec.config.zoom:g}", str(out)]  # fmt: skip

    return build


def resample_only_argv(spec: ClipSpec, out: Path) -> list[str]:
    """The floor, with the picture resampled to the frame size again for every frame (the
    loop comes before the scale): per-frame picture work at swscale's speed, no motion."""
    width, height = spec.frame
    video = (
        ffmpeg.input(str(spec.image), framerate=spec.config.fps)
        .video.filter("format", "yuv420p")
        .filter("loop", loop=spec.frames - 1, size=1)
        .filter("setpts", f"N/({spec.config.fps}*TB)")
        .filter("scale", width, height, flags="bicubic")
        .filter("setsar", 1)
    )
    return _output(video, spec, out)


def frames_argv(spec: ClipSpec, out: Path) -> list[str]:
    """The Ken Burns frames of `spec`, raw (yuv4mpeg), to a file."""
    argv: list[str] = (
        ffmpeg.output(
            _ken_burns(spec, zoom_commands_path(out)), str(out), f="yuv4mpegpipe", pix_fmt="yuv420p"
        )
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    return argv


def codec_only_argv(frames: Path) -> ArgvBuilder:
    """Encode already-made frames with the clip's exact output options."""

    def build(spec: ClipSpec, out: Path) -> list[str]:
        return _output(ffmpeg.input(str(frames)).video, spec, out)

    return build


def read_only_argv(frames: Path) -> ArgvBuilder:
    """Read the raw frames codec only encodes, and drop them: its cost outside the encoder."""

    def build(spec: ClipSpec, out: Path) -> list[str]:
        argv: list[str] = (
            ffmpeg.input(str(frames))
            .output("-", f="null")
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
            .compile()
        )
        return argv

    return build


# ------------------------------------------------------------------ smoothness


@dataclass(frozen=True)
class Smoothness:
    step_error: float  # px: worst frame-to-frame move, less the exact move
    path_error: float  # px: worst distance from the exact path, less the dot's mean offset


def path_errors(measured: Sequence[float], exact: Sequence[float]) -> Smoothness:
    """Compare one coordinate of one dot, frame by frame, with its exact value."""
    if len(measured) != len(exact) or len(measured) < 2:
        raise ValueError("need the same number (at least 2) of measured and exact positions")
    errors = [m - e for m, e in zip(measured, exact, strict=True)]
    mean = sum(errors) / len(errors)
    steps = [abs(b - a) for a, b in itertools.pairwise(errors)]
    return Smoothness(max(steps), max(abs(e - mean) for e in errors))


def worst(results: Sequence[Smoothness]) -> Smoothness:
    return Smoothness(max(r.step_error for r in results), max(r.path_error for r in results))


def centroid(frame: bytes, width: int, x: float, y: float, *, reach: int = 14,
             background: int = 60) -> tuple[float, float]:  # fmt: skip
    """Centroid (pixel centres at +0.5) of the bright blob near (x, y) in a grey frame."""
    x0, y0 = int(x) - reach, int(y) - reach
    total = sum_x = sum_y = 0.0
    for row in range(y0, y0 + 2 * reach + 1):
        line = frame[row * width + x0 : row * width + x0 + 2 * reach + 1]
        for column, value in enumerate(line):
            weight = value - background
            if weight > 0:
                total += weight
                sum_x += weight * (x0 + column + 0.5)
                sum_y += weight * (row + 0.5)
    if total == 0:
        raise ValueError(f"no dot near ({x:.1f}, {y:.1f})")
    return sum_x / total, sum_y / total


def track_dots(
    video: Path, frame: Size, picture: Size, dots: Sequence[tuple[float, float]], zoom: float
) -> Smoothness:
    """Follow every dot of a dot-chart clip; compare with the exact linear zoom about the
    centre from 1 at the first frame to `zoom` at the last."""
    width, height = frame
    scale_x, scale_y = width / picture.width, height / picture.height
    count = frame_count(video)
    if count < 2:
        raise ValueError(f"{video} has {count} frame(s)")
    paths: list[tuple[list[float], list[float], list[float], list[float]]] = [
        ([], [], [], []) for _ in dots
    ]
    decoder = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(video), "-f", "rawvideo",
         "-pix_fmt", "gray", "pipe:1"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert decoder.stdout is not None
    try:
        # One frame at a time: a clip's frames would take hundreds of megabytes.
        n = 0
        while len(data := decoder.stdout.read(width * height)) == width * height:
            z = 1 + (zoom - 1) * n / (count - 1)
            for (sx, sy), (measured_x, measured_y, exact_x, exact_y) in zip(
                dots, paths, strict=True
            ):
                ex = width / 2 + (sx - picture.width / 2) * scale_x * z
                ey = height / 2 + (sy - picture.height / 2) * scale_y * z
                mx, my = centroid(data, width, ex, ey)
                measured_x.append(mx)
                measured_y.append(my)
                exact_x.append(ex)
                exact_y.append(ey)
            n += 1
    finally:
        decoder.stdout.close()
        decoder.wait()
    if n != count:
        raise ValueError(f"{video}: decoded {n} frames, expected {count}")
    results = []
    for measured_x, measured_y, exact_x, exact_y in paths:
        results += [path_errors(measured_x, exact_x), path_errors(measured_y, exact_y)]
    return worst(results)


def frame_count(video: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
         "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(video)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return int(out.strip())


def strips(
    clips: Sequence[Path], frame: Size, picture: Size, dot: tuple[float, float], zoom: float,
    slit: Path, strip: Path,
) -> None:  # fmt: skip
    """Two pictures for humans, each recipe side by side (in the order of `clips`):

    - `slit`: the row of pixels through a dot on the horizontal centre line, one row per
      frame, top to bottom, magnified 8x across and 3x down. A smooth zoom draws a straight
      slanted line; a zoom that moves in steps draws a staircase.
    - `strip`: 8 consecutive frames around that dot (ffmpeg's tile filter), magnified 8x.
    """
    width, height = frame
    sx, sy = dot
    start = width / 2 + (sx - picture.width / 2) * width / picture.width
    end = width / 2 + (sx - picture.width / 2) * width / picture.width * zoom
    left, right = int(min(start, end)) - 16, int(max(start, end)) + 16
    row = int(height / 2 + (sy - picture.height / 2) * height / picture.height)
    frames = frame_count(clips[0])
    inputs = [ffmpeg.input(str(clip)).video.filter("format", "gray") for clip in clips]
    slits = [
        v.filter("crop", right - left, 1, left, row)
        .filter("scale", (right - left) * 8, 1, flags="neighbor")
        .filter("tile", f"1x{frames}")
        .filter("scale", "iw", "ih*3", flags="neighbor")
        .filter("pad", "iw+16", "ih", 0, 0, color="white")
        for v in inputs
    ]
    _still(ffmpeg.filter(slits, "hstack", inputs=len(slits)), slit)
    first = max(0, frames // 2 - 4)
    inputs = [ffmpeg.input(str(clip)).video.filter("format", "gray") for clip in clips]
    tiles = [
        v.filter("select", f"between(n,{first},{first + 7})")
        .filter("crop", 32, 32, int((start + end) / 2) - 16, row - 16)
        .filter("scale", 256, 256, flags="neighbor")
        .filter("tile", "8x1", padding=4, color="white")
        for v in inputs
    ]
    _still(ffmpeg.filter(tiles, "vstack", inputs=len(tiles)), strip)


def _still(video: ffmpeg.nodes.FilterableStream, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = (
        ffmpeg.output(video, str(out), vframes=1, update=1)
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    subprocess.run(argv, check=True, timeout=300)


# ------------------------------------------------------------------ the benchmark


@dataclass
class Recipe:
    name: str
    build: ArgvBuilder
    moves: bool = True  # a zoom (its SSIM against the exact zoom means something)
    timings: list[Timing] = field(default_factory=list)
    wall_ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    smoothness: Smoothness | None = None
    size: int = 0  # bytes of the recipe's clip (the last round's; every round makes the same)
    ssim: float | None = None  # against the exact zoom, lossless

    @property
    def wall(self) -> float:
        return median(t.wall for t in self.timings)

    @property
    def cpu(self) -> float:
        return median(t.cpu for t in self.timings)


@dataclass
class EncodeResult:
    aspect: str
    frame: Size
    seconds: float  # of video per clip
    rounds: int
    recipes: list[Recipe]
    preset: str  # x264's, for every recipe
    picture: Size  # the picture's size (the API's for the aspect)

    @property
    def default(self) -> bool:
        """Measured at the shipped `[video]` settings (not one of `--encode-presets`)."""
        return self.preset == VideoConfig().preset

    def has(self, name: str) -> bool:
        return any(r.name == name for r in self.recipes)

    def recipe(self, name: str) -> Recipe:
        return next(r for r in self.recipes if r.name == name)

    def ratio(self, name: str, to: str) -> float:
        """Median over rounds of the wall time of `name` / that of `to` in the same round."""
        pairs = zip(self.recipe(name).timings, self.recipe(to).timings, strict=True)
        return median(a.wall / b.wall for a, b in pairs)

    def cpu_ratio(self, name: str, to: str) -> float:
        """The same with CPU time, which a busy machine moves less than wall time."""
        pairs = zip(self.recipe(name).timings, self.recipe(to).timings, strict=True)
        return median(a.cpu / b.cpu for a, b in pairs)

    def speed(self, name: str) -> float:
        """Seconds of video made per wall second."""
        return self.seconds / self.recipe(name).wall

    def bound(self) -> float:
        """The least wall-time ratio to the floor any zoom recipe can have at these settings:
        coding the motion (codec only, less reading its input) plus making the frames at
        swscale's speed (resample only, less the floor it includes; none if noise puts it
        under the floor)."""
        coding = self.ratio(CODEC_ONLY, FLOOR) - self.ratio(READ_ONLY, FLOOR)
        return coding + max(0.0, self.ratio(RESAMPLE_ONLY, FLOOR) - 1.0)


FLOOR, KEN_BURNS, CODEC_ONLY = "floor", "Ken Burns", "codec only"
RESAMPLE_ONLY, PREVIOUS, RECIPE_2 = "resample only", "previous", "recipe 2"
READ_ONLY, MOVIEPY = "reading the frames", "MoviePy"


def encode_bench(
    aspect: str, *, seconds: float, rounds: int, workdir: Path, pictures: Path | None = None,
    preset: str | None = None, smoothness: bool = True, moviepy: bool = True,
) -> EncodeResult:  # fmt: skip
    """Time the recipes side by side at `aspect`'s frame size on a photo-like picture (at
    x264 `preset`, default the shipped one), with MoviePy too if asked and installed; then
    the SSIM of every moving recipe's clip against the exact zoom, and the zoom's
    smoothness on the dot chart unless told not to. With `pictures`, write the strips
    there."""
    shape = Aspect.parse(aspect)
    frame, size = shape.frame, shape.image
    config = VideoConfig() if preset is None else VideoConfig(preset=preset)
    workdir.mkdir(parents=True, exist_ok=True)
    tag = aspect.replace(":", "x")
    image, chart_file = workdir / f"photo-{tag}.png", workdir / f"chart-{tag}.png"
    audio = workdir / f"narration-{tag}.wav"
    photo(size.width, size.height, seed=11).save(image)
    chart = dot_chart(size.width, size.height)
    chart.image.save(chart_file)
    audio_seconds = seconds - config.pad_seconds
    audio.write_bytes(make_wav(audio_seconds))
    spec = ClipSpec(image, audio, audio_seconds, frame, config)
    seconds = spec.seconds

    raw = workdir / f"kenburns-{tag}.y4m"
    subprocess.run(frames_argv(spec, raw), check=True, timeout=900)
    recipes = [
        Recipe(FLOOR, still_argv, moves=False),
        Recipe(KEN_BURNS, clip_argv),
        Recipe(CODEC_ONLY, codec_only_argv(raw)),
        Recipe(READ_ONLY, read_only_argv(raw), moves=False),
        Recipe(RESAMPLE_ONLY, resample_only_argv, moves=False),
        Recipe(RECIPE_2, recipe2_argv),
        Recipe(PREVIOUS, previous_clip_argv),
    ]
    python = moviepy_python() if moviepy else None
    if python is not None:
        recipes.append(Recipe(MOVIEPY, moviepy_argv(python)))
    clips: dict[str, Path] = {}
    try:
        for round_ in range(rounds):
            # Rotate the order, so no recipe always runs first (or right after another).
            order = recipes[round_ % len(recipes) :] + recipes[: round_ % len(recipes)]
            timings = {}
            for recipe in order:
                clip = workdir / f"{tag}-{recipe.name.replace(' ', '-')}.mp4"
                timings[recipe.name] = run_timed(recipe.build(spec, clip))
                recipe.size = clip.stat().st_size if clip.exists() else 0  # 0: no clip
                if clip.exists():
                    clips[recipe.name] = clip
            floor = timings[FLOOR]
            for recipe in recipes:
                timing = timings[recipe.name]
                recipe.timings.append(timing)
                recipe.wall_ratios.append(timing.wall / floor.wall)
                recipe.cpu_ratios.append(timing.cpu / floor.cpu)
    finally:
        raw.unlink(missing_ok=True)

    # Quality: every moving recipe's clip against the exact zoom, lossless.
    reference = workdir / f"exact-{tag}.mkv"
    render_reference(image, frame, spec.frames, config.zoom, config.fps, reference)
    try:
        for recipe in recipes:
            if recipe.moves and recipe.name in clips:
                recipe.ssim = ssim(clips[recipe.name], reference)
    finally:
        reference.unlink(missing_ok=True)

    result = EncodeResult(aspect, frame, seconds, rounds, recipes, config.preset, size)
    if not smoothness:
        return result
    dots_spec = ClipSpec(chart_file, audio, audio_seconds, frame, VideoConfig(crf=1))
    made = []
    # previous, then Ken Burns: left to right
    for recipe in (result.recipe(PREVIOUS), result.recipe(KEN_BURNS)):
        clip = workdir / f"dots-{recipe.name.replace(' ', '-')}-{tag}.mp4"
        subprocess.run(recipe.build(dots_spec, clip), check=True, timeout=900)
        recipe.smoothness = track_dots(clip, frame, size, chart.dots, config.zoom)
        made.append(clip)
    if pictures is not None:
        strips(made, frame, size, chart.dots[1], config.zoom,
               pictures / f"zoom-slit-{tag}.png", pictures / f"zoom-strip-{tag}.png")  # fmt: skip
    return result
