"""The MoviePy row of the encode benchmark: one Ken Burns clip made the way MoviePy-based
tools (MoneyPrinterTurbo and the like) make one, run as its own process so that its time is
measured like ffmpeg's:

    python bench/moviepy_clip.py IMAGE AUDIO SECONDS WIDTH HEIGHT ZOOM OUT

The picture is cover-resized to the frame, zoomed by `resized(t)` from 1 to ZOOM over the
clip, centred in a `CompositeVideoClip` of the frame's size, and written with
`write_videofile(fps=30, codec="libx264", audio_codec="aac", threads=2)` at MoviePy's default
preset (medium), by the ffmpeg that MoviePy brings (imageio-ffmpeg's).

MoviePy is a benchmark-only dependency (the `bench` extra). It pins an older Pillow than
reelbot's, so `make bench` installs it into a venv of its own (.venv/moviepy), and this file
imports nothing of reelbot.
"""

from __future__ import annotations

import sys
from pathlib import Path

FPS = 30


def make_clip(image: Path, audio: Path, seconds: float, width: int, height: int,
              zoom: float, out: Path) -> None:  # fmt: skip
    from moviepy import AudioFileClip, CompositeAudioClip, CompositeVideoClip, ImageClip

    narration = AudioFileClip(str(audio))
    picture = ImageClip(str(image)).with_duration(seconds)
    cover = max(width / picture.w, height / picture.h)
    picture = picture.resized(cover)
    # 1 at the first frame, `zoom` at the last (t = seconds - 1/FPS), as clip_argv zooms.
    rate = (zoom - 1.0) / max(1.0 / FPS, seconds - 1.0 / FPS)
    moving = picture.resized(lambda t: 1.0 + rate * t).with_position("center")
    video = CompositeVideoClip([moving], size=(width, height)).with_duration(seconds)
    # The narration, then silence to the end of the clip (the pad).
    video = video.with_audio(CompositeAudioClip([narration]).with_duration(seconds))
    video.write_videofile(str(out), fps=FPS, codec="libx264", audio_codec="aac", threads=2,
                          logger=None)  # fmt: skip
    narration.close()
    video.close()


def main(argv: list[str]) -> int:
    if len(argv) != 7:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    image, audio, seconds, width, height, zoom, out = argv
    make_clip(Path(image), Path(audio), float(seconds), int(width), int(height), float(zoom),
              Path(out))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
