"""A scene's own media for the tests, made here: pictures with Pillow, clips with ffmpeg, and
measurements of what a rendered frame shows."""

from __future__ import annotations

import subprocess
from io import BytesIO
from pathlib import Path

from PIL import Image

Colour = tuple[int, int, int]
RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 40), (20, 40, 230), (240, 220, 20)


def make_picture(
    path: Path,
    size: tuple[int, int] = (320, 480),
    colour: Colour = BLUE,
    *,
    image_format: str = "JPEG",
    orientation: int | None = None,
) -> Path:
    picture = Image.new("RGB", size, colour)
    options: dict[str, object] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    picture.save(path, format=image_format, **options)
    return path


def make_clip(
    path: Path,
    colours: tuple[Colour, ...] = (RED, GREEN),
    *,
    seconds: float = 1.0,
    size: tuple[int, int] = (320, 240),
    tone: float | None = None,
    fps: int = 10,
) -> Path:
    """A clip showing `colours` one after another, `seconds` in all (MP4, MOV or WebM by the
    name); with `tone`, a sine of that many Hz as its sound."""
    each = seconds / len(colours)
    argv = ["ffmpeg", "-v", "error", "-y"]
    for colour in colours:
        hex_colour = "0x{:02x}{:02x}{:02x}".format(*colour)
        argv += ["-f", "lavfi", "-i", f"color=c={hex_colour}:s={size[0]}x{size[1]}:r={fps}:"
                 f"d={each:.3f}"]  # fmt: skip
    if tone is not None:
        argv += ["-f", "lavfi", "-i", f"sine=f={tone}:d={seconds}"]
    graph = "".join(f"[{i}:v]" for i in range(len(colours))) + f"concat=n={len(colours)}:v=1[v]"
    argv += ["-filter_complex", graph, "-map", "[v]"]
    if tone is not None:
        argv += ["-map", f"{len(colours)}:a"]
    webm = path.suffix == ".webm"
    argv += ["-c:v", "libvpx-vp9" if webm else "libx264", "-pix_fmt", "yuv420p"]
    if tone is not None:
        argv += ["-c:a", "libopus" if webm else "aac", "-ar", "48000", "-ac", "2"]
    argv += ["-t", f"{seconds}", str(path)]
    subprocess.run(argv, check=True, timeout=120)
    return path


def frame_colour(video: Path, at: float, box: tuple[int, int, int, int] | None = None) -> Colour:
    """The mean colour of the frame at `at` seconds, within `box` (left, top, right, bottom;
    default the middle tenth of the frame)."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", f"{at:.3f}", "-i", str(video), "-frames:v", "1",
         "-f", "image2pipe", "-vcodec", "png", "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    with Image.open(BytesIO(raw)) as frame:
        picture = frame.convert("RGB")
    width, height = picture.size
    box = box or (width * 9 // 20, height * 9 // 20, width * 11 // 20, height * 11 // 20)
    mean = picture.crop(box).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(mean, tuple)
    red, green, blue = (int(v) for v in mean[:3])
    return red, green, blue


def near(colour: Colour, wanted: Colour, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, wanted, strict=True))
