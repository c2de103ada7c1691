"""Inputs of the benchmarks, all generated and deterministic: photo-like pictures, a chart of
dots whose positions are known to a fraction of a pixel, and scripts of N scenes."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

# ------------------------------------------------------------------ pictures


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A picture with the statistics of a photograph rather than of a flat card: detail at
    every scale (amplitude falling with frequency, like natural images), smooth colour, and a
    few hard edges. The encoder's work on a clip depends on this; on a flat colour it is nil."""
    rng = random.Random(seed)
    longest = max(width, height)

    def noise(cells: int, mode: str) -> Image.Image:
        w = max(2, cells * width // longest + 2)
        h = max(2, cells * height // longest + 2)
        bands = len(mode)
        small = Image.frombytes(mode, (w, h), rng.randbytes(w * h * bands))
        return small.resize((width, height), Image.Resampling.BICUBIC)

    # Luminance: octaves of value noise, each 1/1.5 the amplitude of the one below it.
    light = Image.new("L", (width, height), 128)
    weight = 0.0
    for octave in range(1, 9):
        amplitude = 1.5**-octave
        weight += amplitude
        light = Image.blend(light, noise(2**octave, "L"), amplitude / weight)
    light = light.point(lambda v: max(0, min(255, (v - 128) * 4 + 128)))
    # Colour: low frequencies only, as in most photographs.
    colour = noise(3, "RGB").filter(ImageFilter.GaussianBlur(longest / 40))
    picture = Image.blend(colour, Image.merge("RGB", (light, light, light)), 0.6)
    draw = ImageDraw.Draw(picture)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        size = rng.randrange(longest // 30, longest // 8)
        fill = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        box = (x, y, x + size, y + int(size * rng.uniform(0.4, 2.0)))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    return picture.filter(ImageFilter.GaussianBlur(0.6))


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


_POOL: dict[tuple[int, int, int], list[bytes]] = {}


def photo_pool(width: int, height: int, count: int = 4) -> list[bytes]:
    """`count` different photo-like PNGs of one size (made once per process)."""
    key = (width, height, count)
    if key not in _POOL:
        _POOL[key] = [png_bytes(photo(width, height, seed)) for seed in range(count)]
    return _POOL[key]


# ------------------------------------------------------------------ the dot chart

SUPERSAMPLE = 8


@dataclass(frozen=True)
class DotChart:
    image: Image.Image
    dots: list[tuple[float, float]]  # centres, in pixels of the image (0.0 = the left edge)


def dot_chart(width: int, height: int, *, radius: float = 0.0025) -> DotChart:
    """Small soft white dots on dark grey. A centroid locates each to ~0.01 pixel, so the
    path of each dot through a clip shows the zoom's geometry frame by frame. Dots sit on the
    two centre lines (they move along one axis only) and on a grid towards the corners (where
    the motion is fastest); all stay inside the picture at a zoom of 1.3."""
    fractions = [(-0.36, 0.0), (0.36, 0.0), (0.0, -0.36), (0.0, 0.36)]
    fractions += [(fx, fy) for fx in (-0.36, -0.18, 0.18, 0.36) for fy in (-0.36, 0.18, 0.36)]
    big = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 40)
    draw = ImageDraw.Draw(big)
    size = radius * max(width, height) * SUPERSAMPLE  # radius: a fraction of the long side
    dots = []
    for fx, fy in fractions:
        x, y = width * (0.5 + fx), height * (0.5 + fy)
        dots.append((x, y))
        cx, cy = x * SUPERSAMPLE, y * SUPERSAMPLE
        draw.ellipse((cx - size, cy - size, cx + size, cy + size), fill=235)
    small = big.filter(ImageFilter.GaussianBlur(SUPERSAMPLE)).resize(
        (width, height), Image.Resampling.BOX
    )
    return DotChart(small.convert("RGB"), dots)


# ------------------------------------------------------------------ scripts

_TEXT = (
    "the lamp keeper climbs slow stone stairs above grey waves while gulls wheel over "
    "harbour boats and the tide turns under a pale moon each night he writes one line "
    "in the log then trims the wick and waits for ships that never come home again"
)
WORDS = tuple(_TEXT.split())


def narration(rng: random.Random, low: int, high: int) -> str:
    """Words until the text is between `low` and `high` characters long."""
    target = rng.randint(low, high)
    words: list[str] = []
    while len(" ".join(words)) < target:
        words.append(rng.choice(WORDS))
    text = " ".join(words)[:high].rstrip()
    return text[0].upper() + text[1:] + "."


def make_script(scenes: int, *, chars: tuple[int, int] = (35, 65), seed: int = 7) -> str:
    """A Markdown script of `scenes` scenes, each with its own image prompt and its own
    narration (no two alike: a repeated narration is one cached artifact, not two renders)."""
    rng = random.Random(seed)
    lines = [f"# Benchmark, {scenes} scenes", ""]
    said: set[str] = set()
    for number in range(1, scenes + 1):
        text = narration(rng, *chars)
        while text in said:
            text = narration(rng, *chars)
        said.add(text)
        lines += [
            f"## Scene {number}",
            f"image: benchmark picture {number}, {rng.choice(WORDS)} {rng.choice(WORDS)}",
            text,
            "",
        ]
    return "\n".join(lines)
