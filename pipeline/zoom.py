"""The Ken Burns zoom as swscale can do it exactly: a plan of crops and sizes, frame by frame.

Frame n of a clip shows the centred rectangle W/z(n) x H/z(n) of the picture (W x H), z(n)
linear from 1 to the zoom, brought to the frame (F x G). swscale (ffmpeg's `scale`) is the
fastest resampler ffmpeg has, but it only scales a whole frame to a whole size, and `crop`
cuts in whole pixels. Along one axis, cropping `size` pixels at `start`, scaling them to
`scaled` and cropping the frame's width at `skip` shows, at output pixel X, the source position

    start + (X + skip + 0.5) * step - 0.5,   step = round(2^16 * size / scaled) / 2^16

(swscale's own fixed-point step). The exact zoom wants

    centre - 0.5 + (X + 0.5 - F / 2) * ratio,  ratio = W / (F * z(n)),  centre = W / 2.

For each frame and axis `plan_zoom` searches the whole numbers (start, size, scaled, skip) that
make the two agree within `TOLERANCE` of a source pixel across the whole frame: the step must
match the ratio to a few millionths (a fraction of small whole numbers does only near some
ratios, hence the search over `scaled`) and the offset must land on the centre. The smallest
`scaled` that does is kept: swscale's work grows with it.

Near a ratio of small whole numbers (1/2: a 576-pixel picture zoomed into a 1080-pixel frame
passes it) no fraction of sizes this small is close enough, and the offsets it allows come in
halves of a pixel. For those frames the plan reads a copy of the picture scaled once (Lanczos)
by a ratio far from every simple fraction (`COPIES`), whose own ratio to the frame is then
nowhere near a simple one. The copies sit below the picture in one padded canvas (edges
smeared outward: a crop may reach past a copy by `PAD`), so choosing a copy is a crop.

`commands` writes the plan as an ffmpeg `sendcmd` file: per frame, the crop's size and place,
the scale's size and the last crop's place (the frame size never changes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .aspect import Size

__all__ = [
    "COPIES",
    "PAD",
    "SCALE_HEIGHT",
    "TOLERANCE",
    "AxisStep",
    "Canvas",
    "FrameStep",
    "Zoom",
    "commands",
    "plan_zoom",
    "scale_width",
    "zoom_at",
]  # fmt: skip

TOLERANCE = 0.02  # source pixels, anywhere in the frame
PAD = 128  # pixels of smeared edge around each copy of the picture in the canvas
# The copies' scales: far from every ratio of small whole numbers (28/27, 25/24, ...) and
# from each other's ratios to them.
COPIES = (1.0393, 1.0719)
SEARCH = 0.3  # `scaled` goes up to (1 + SEARCH) x the frame's side,
WIDER = 2.0  # or (1 + WIDER) x for the frames that need it (small frames: few fractions)
_ONE = 1 << 16  # swscale's fixed point


@dataclass(frozen=True)
class AxisStep:
    """One axis of one frame: crop `size` at `start` (in the canvas), scale to `scaled`,
    keep the frame's side from `skip`; `error` is the worst miss, in source pixels."""

    start: int
    size: int
    scaled: int
    skip: int
    error: float


@dataclass(frozen=True)
class FrameStep:
    x: AxisStep
    y: AxisStep
    copy: int  # which copy of the picture the crop is in: 0, the picture itself


@dataclass(frozen=True)
class Canvas:
    """The padded picture and the copies the plan reads, one below the other."""

    copies: tuple[Size, ...]  # the picture first, then its scaled copies

    @property
    def width(self) -> int:
        return max(copy.width for copy in self.copies) + 2 * PAD

    @property
    def height(self) -> int:
        return sum(copy.height + 2 * PAD for copy in self.copies)

    def top(self, copy: int) -> int:
        """Where copy number `copy`'s pixels start in the canvas (below its padding)."""
        return PAD + sum(c.height + 2 * PAD for c in self.copies[:copy])


@dataclass(frozen=True)
class Zoom:
    canvas: Canvas
    frames: tuple[FrameStep, ...]

    @property
    def worst(self) -> float:
        """The worst miss of the plan, in source pixels."""
        return max(max(f.x.error, f.y.error) for f in self.frames)


def zoom_at(n: int, frames: int, zoom: float) -> float:
    return 1.0 + (zoom - 1.0) * n / max(1, frames - 1)


def _swscale_step(size: int, scaled: int) -> int:
    return ((size << 16) + (scaled >> 1)) // scaled


def _axis(side: int, centre: float, ratio: float, frame: int, tolerance: float,
          widest: int) -> AxisStep | None:  # fmt: skip
    """The plan for one axis within `tolerance`, or None. `side`: the copy's side; `centre`
    and `ratio`: the exact zoom in the copy's pixels; `scaled` goes up to `widest`. Offsets
    are relative to the copy, whose edges are smeared outward by PAD pixels."""
    half = frame / 2
    best: AxisStep | None = None
    for scaled in range(frame, widest + 1, 2):
        wanted = ratio * scaled
        for size in (math.floor(wanted), math.ceil(wanted)):
            if size < 8 or size > side + 2 * PAD:
                continue
            fixed = _swscale_step(size, scaled)
            if 0 < abs(fixed - _ONE) < 10:  # swscale would copy, not scale
                continue
            step = fixed / _ONE
            slope = abs(step - ratio) * (half - 0.5)
            if slope > (tolerance if best is None else min(tolerance, best.error)):
                continue
            # Offsets that land the frame's centre on `centre` (even skips: yuv420p crops).
            for skip in range(0, scaled - frame + 1, 2):
                exact = centre - (half + skip) * step
                start = round(exact)
                miss = abs(start - exact) + slope
                if best is not None and miss >= best.error:
                    continue
                if start < -PAD or start + size > side + PAD:
                    continue
                # Bicubic reads two pixels either side, which swscale takes from the crop's
                # own edge if they fall outside it: right only where that edge is the
                # picture's (or past it, in the smear).
                first = start + (skip + 0.5) * step - 0.5
                last = first + (frame - 1) * step
                if start > 0 and math.floor(first) - 1 < start:
                    continue
                if start + size < side and math.floor(last) + 2 > start + size - 1:
                    continue
                best = AxisStep(start, size, scaled, skip, miss)
            if best is not None and best.error <= tolerance:
                return best
    return None


def _copy_axis(side: int, copy: int, ratio: float, frame: int, tolerance: float,
               widest: int) -> AxisStep | None:  # fmt: skip
    """One axis, read from a copy of the picture scaled (by swscale) from `side` to `copy`."""
    if copy == side:
        return _axis(side, side / 2, ratio, frame, tolerance, widest)
    t = _swscale_step(side, copy) / _ONE  # picture pixels per copy pixel
    return _axis(copy, side / (2 * t), ratio / t, frame, tolerance, widest)


def _frame(copies: tuple[Size, ...], frame: Size, z: float,
           tolerance: float) -> tuple[AxisStep, AxisStep, int]:  # fmt: skip
    """One frame's plan: from the picture if it can be exact there, else from the first copy
    that can, else with a wider search; failing all, the least miss found (the tolerance
    doubled until something is)."""
    picture = copies[0]
    rx, ry = picture.width / (frame.width * z), picture.height / (frame.height * z)
    allowed = tolerance
    while allowed < 1:
        for reach in (SEARCH, WIDER):
            widest = Size(max(frame.width + 2, int(frame.width * (1 + reach))),
                          max(frame.height + 2, int(frame.height * (1 + reach))))  # fmt: skip
            for number, copy in enumerate(copies):
                x = _copy_axis(picture.width, copy.width, rx, frame.width, allowed,
                               widest.width)  # fmt: skip
                if x is None:
                    continue
                y = _copy_axis(picture.height, copy.height, ry, frame.height, allowed,
                               widest.height)  # fmt: skip
                if y is not None:
                    return x, y, number
        allowed *= 2
    raise ValueError(f"no crop and scale can zoom a {picture} picture into {frame}")


def plan_zoom(picture: Size, frame: Size, frames: int, zoom: float, *,
              tolerance: float = TOLERANCE) -> Zoom:  # fmt: skip
    """The crops and sizes of every frame of a zoom from 1 to `zoom` over `frames` frames."""
    copies = (picture, *(Size(round(picture.width * k) // 2 * 2,
                               round(picture.height * k) // 2 * 2) for k in COPIES))  # fmt: skip
    steps = [_frame(copies, frame, zoom_at(n, frames, zoom), tolerance) for n in range(frames)]
    canvas = Canvas(copies[: max(number for _, _, number in steps) + 1])
    placed = tuple(
        FrameStep(replace(x, start=x.start + PAD), replace(y, start=y.start + canvas.top(number)),
                  number)
        for x, y, number in steps
    )  # fmt: skip
    return Zoom(canvas, placed)


CROP, SCALE, FRAME = "crop@zoom", "scale@zoom", "crop@frame"
# Each command to `scale` sets it up again, and a frame needs a new width and height: one
# command carries both. `scale` evaluates its width (the output height unknown: NaN), then its
# height (knowing that width), then its width again; the first width is width * 10000 + height,
# whose last four digits the height keeps.
SCALE_HEIGHT = "ow-trunc(ow/10000)*10000"


def scale_width(width: int, height: int) -> str:
    """`scale`'s width expression for a frame of `width` x `height` (see SCALE_HEIGHT)."""
    if not 0 < height < 10000:
        raise ValueError(f"height {height} out of range")
    return f"{width}+isnan(oh)*{width * 9999 + height}"


def commands(plan: Zoom, fps: int) -> str:
    """The plan as a `sendcmd` file: each frame's commands, sent half a frame before it."""
    lines = []
    for n, step in enumerate(plan.frames):
        at = max(0.0, (n - 0.5) / fps)
        x, y = step.x, step.y
        lines.append(
            f"{at:.6f} {CROP} w {x.size}, {CROP} h {y.size}, {CROP} x {x.start}, "
            f"{CROP} y {y.start}, {SCALE} w {scale_width(x.scaled, y.scaled)}, "
            f"{FRAME} x {x.skip}, {FRAME} y {y.skip};"
        )
    return "\n".join(lines) + "\n"
