"""Quality, measured: the SSIM of a clip's frames against the exact zoom, rendered losslessly.

The reference is made apart from every recipe it judges, by Pillow: each frame is the centred
rectangle of the picture W/z(n) by H/z(n) (z(n) linear from 1 at the first frame to the zoom
at the last; sub-pixel, Pillow's `resize(box=...)` takes it in floating point), resampled
straight to the frame size with Lanczos, converted to yuv420p by ffmpeg as the clips are, and
stored lossless (FFV1). ffmpeg's `ssim` filter then compares a clip with it frame by frame;
the figure is its mean over the clip ("All": Y, U and V weighted by their sizes).

A recipe that places the picture a fraction of a pixel off, zooms in whole-pixel steps or
loses detail to the encoder loses SSIM; one that is exact loses only what the encoder drops.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from PIL import Image

from pipeline.aspect import Size


def zoom_box(picture: Size, zoom: float) -> tuple[float, float, float, float]:
    """The centred rectangle of the picture shown at `zoom` (edges, in its pixels)."""
    width, height = picture
    half_w, half_h = width / 2 / zoom, height / 2 / zoom
    return (width / 2 - half_w, height / 2 - half_h, width / 2 + half_w, height / 2 + half_h)


def reference_argv(frame: Size, fps: int, out: Path) -> list[str]:
    """ffmpeg reading raw RGB frames on stdin, writing them lossless as yuv420p FFV1."""
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{frame.width}x{frame.height}", "-framerate", str(fps),
            "-i", "pipe:0", "-vf", "format=yuv420p", "-c:v", "ffv1", "-y", str(out)]  # fmt: skip


def render_reference(image: Path, frame: Size, frames: int, zoom: float, fps: int,
                     out: Path) -> None:  # fmt: skip
    """The exact zoom of `image` to `frame` over `frames` frames, lossless, to `out` (.mkv).
    The picture is first cropped to the frame's shape about its centre, as clips crop it."""
    with Image.open(image) as opened:
        picture = opened.convert("RGB")
    width, height = picture.size
    if width * frame.height > height * frame.width:  # wider than the frame: crop the sides
        keep = height * frame.width / frame.height
        box: tuple[float, float, float, float] = ((width - keep) / 2, 0, (width + keep) / 2,
                                                  height)  # fmt: skip
    else:
        keep = width * frame.height / frame.width
        box = (0, (height - keep) / 2, width, (height + keep) / 2)
    shape = Size(round(box[2] - box[0]), round(box[3] - box[1]))
    left, top, right, bottom = (round(v) for v in box)
    picture = picture.crop((left, top, right, bottom))
    encoder = subprocess.Popen(reference_argv(frame, fps, out), stdin=subprocess.PIPE)
    assert encoder.stdin is not None
    try:
        for n in range(frames):
            z = 1 + (zoom - 1) * n / max(1, frames - 1)
            made = picture.resize((frame.width, frame.height), Image.Resampling.LANCZOS,
                                  box=zoom_box(shape, z))  # fmt: skip
            encoder.stdin.write(made.tobytes())
    finally:
        encoder.stdin.close()
        if encoder.wait(timeout=600) != 0:
            raise RuntimeError(f"ffmpeg could not write the reference {out}")


SSIM_ALL = re.compile(r"SSIM Y:[0-9.]+ .* All:([0-9.]+)")


def ssim(clip: Path, reference: Path, *, ffmpeg: str = "ffmpeg") -> float:
    """Mean SSIM of `clip`'s frames against `reference`'s (the same count, the same size)."""
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", str(clip), "-i", str(reference),
         "-lavfi", "[0:v]format=yuv420p[a];[1:v]format=yuv420p[b];[a][b]ssim=shortest=1",
         "-f", "null", "-"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    found = SSIM_ALL.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"ssim of {clip.name} failed: {done.stderr[-1000:]}")
    return float(found.group(1))
