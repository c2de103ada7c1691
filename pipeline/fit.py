"""Fitting a finished video into a size limit (a chat service's upload limit), by re-encoding.

A video over the limit is re-encoded, aiming at 85–95 % of the allowance:

    video kbit/s = limit × 8 × 0.90 / duration − audio kbit/s

at the largest frame that bitrate carries well (about 0.02 bits per pixel per frame: 1080x1920
at 30 fps wants 1.2 Mbit/s), never larger than the video's own. x264 rarely lands exactly on a
bitrate, so the size is measured and the bitrate corrected by the miss, up to three encodes; the
largest result under the limit is kept. (A picture so simple that it needs fewer bits even at
its full frame size stays smaller.) If the bitrate would be absurdly low, `fit_to_limit` says
so with None: the video is too long for the limit.

The argv is built by ffmpeg-python (`fit_argv`, tested as argv) and run without a shell, with a
timeout, by `pipeline/proc.py`, as every other ffmpeg run of the pipeline.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from .media import probe
from .proc import run_program

__all__ = ["AUDIO_KBPS", "MIN_VIDEO_KBPS", "FitPlan", "fit_argv", "fit_to_limit", "plan_fit"]

log = logging.getLogger(__name__)

AIM = 0.90  # share of the limit a re-encode aims at ...
LOW = 0.85  # ... and the least it is content with (never more than the limit)
AUDIO_KBPS = 64  # narration survives 64 kbit/s AAC well
MIN_VIDEO_KBPS = 40  # below this, a still-image slideshow turns to mush: refuse instead
BITS_PER_PIXEL = 0.02  # per frame: what a slow zoom over a still picture needs to look clean
MIN_SHORT_SIDE = 240
MAX_ENCODES = 3
MIB = 1024 * 1024


@dataclass(frozen=True)
class FitPlan:
    video_kbps: int
    audio_kbps: int
    width: int
    height: int


def plan_fit(
    target_bytes: float, duration: float, width: int, height: int, fps: float = 30.0
) -> FitPlan | None:
    """How to re-encode a `duration`-second video to about `target_bytes`; None if the
    bitrate that leaves is too low to be worth sending."""
    if duration <= 0:
        return None
    video_kbps = int(target_bytes * 8 / duration / 1000 - AUDIO_KBPS)
    if video_kbps < MIN_VIDEO_KBPS:
        return None
    pixels = video_kbps * 1000 / (BITS_PER_PIXEL * max(fps, 1.0))
    scale = min(1.0, math.sqrt(pixels / (width * height)))
    scale = max(scale, min(1.0, MIN_SHORT_SIDE / min(width, height)))
    return FitPlan(video_kbps, AUDIO_KBPS, _even(width * scale), _even(height * scale))


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def fit_argv(source: Path, out: Path, plan: FitPlan, *, preset: str) -> list[str]:
    """ffmpeg argv (never a shell) re-encoding `source` to `plan`. An average bitrate with a
    loose peak cap: a strict one-second buffer makes x264 undershoot by half."""
    stream = ffmpeg.input(str(source))
    video = stream.video.filter("scale", plan.width, plan.height).filter("setsar", 1)
    kbps = plan.video_kbps
    argv: list[str] = (
        ffmpeg.output(
            video,
            stream.audio,
            str(out),
            vcodec="libx264",
            preset=preset,
            pix_fmt="yuv420p",
            acodec="aac",
            audio_bitrate=f"{plan.audio_kbps}k",
            movflags="+faststart",
            f="mp4",
            **{"b:v": f"{kbps}k", "maxrate": f"{2 * kbps}k", "bufsize": f"{4 * kbps}k"},
        )
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    return argv


async def fit_to_limit(
    source: Path, out: Path, limit_bytes: int, *, duration: float, preset: str, timeout: float
) -> Path | None:
    """Re-encode `source` into `out` at 85–95 % of `limit_bytes` (see the module); None if it
    cannot fit. Raises MediaError if ffmpeg fails."""
    info = await probe(source)
    video = info.stream("video") or {}
    width, height = int(str(video.get("width", 1080))), int(str(video.get("height", 1920)))
    fps = _rate(str(video.get("avg_frame_rate") or video.get("r_frame_rate") or "30"))
    target = limit_bytes * AIM
    best: tuple[int, FitPlan] | None = None
    attempt = out.with_name(f"{out.stem}.try{out.suffix}")
    try:
        for _ in range(MAX_ENCODES):
            plan = plan_fit(target, duration, width, height, fps)
            if plan is None:
                break
            argv = fit_argv(source, attempt, plan, preset=preset)
            await run_program(argv, what="ffmpeg (re-encode to fit the upload limit)",
                              timeout=timeout)  # fmt: skip
            size = attempt.stat().st_size
            if size <= limit_bytes and (best is None or size > best[0]):
                attempt.replace(out)
                best = (size, plan)
                if size >= LOW * limit_bytes:
                    break
            # Missed the window: correct the bitrate by the miss and encode again.
            target *= AIM * limit_bytes / size
    finally:
        attempt.unlink(missing_ok=True)
    if best is None:
        out.unlink(missing_ok=True)
        return None
    size, plan = best
    log.info("re-encoded %s to %.2f MiB (%.0f %% of the %.2f MiB limit; %d kbit/s video, %dx%d)",
             source.name, size / MIB, 100 * size / limit_bytes, limit_bytes / MIB,
             plan.video_kbps, plan.width, plan.height)  # fmt: skip
    return out


def _rate(text: str) -> float:
    """A frame rate as ffprobe writes it ("30/1", "30000/1001")."""
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 30.0
    return value if value > 0 else 30.0
