"""Posting the finished video: within the upload limit, or a plain word why not.

The limit is the guild's (`Guild.filesize_limit`: 10 MiB, or 50 / 100 MiB in a server boosted
to level 2 / 3), the limit that binds the bot's own `channel.send`; not the interaction's
`attachment_size_limit`, which is what the *invoking user* may upload (their Nitro included).
A video over it is re-encoded, aiming at 85–95 % of the allowance:

    video kbit/s = limit × 8 × 0.90 / duration − audio kbit/s

at the largest frame that bitrate carries well (about 0.02 bits per pixel per frame: 1080x1920
at 30 fps wants 1.2 Mbit/s), never larger than the video's own. x264 rarely lands exactly on a
bitrate, so the size is measured and the bitrate corrected by the miss, up to three encodes; the
largest result under the limit is kept. (A picture so simple that it needs fewer bits even at
its full frame size stays smaller.) If the bitrate would be absurdly low, the bot says the video
is too long to post and where the file is kept. A 413 from Discord (code 40005: the real limit
was smaller) re-encodes smaller once and tries again.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import discord
import ffmpeg

from pipeline.errors import MediaError
from pipeline.media import probe
from pipeline.proc import run_program

from .answers import mention_only
from .progress_message import format_duration

__all__ = [
    "DeliveryOutcome",
    "FitPlan",
    "VideoDelivery",
    "fit_argv",
    "fit_to_limit",
    "format_size",
    "plan_fit",
    "upload_limit_for",
]

log = logging.getLogger(__name__)

AIM = 0.90  # share of the limit a re-encode aims at ...
LOW = 0.85  # ... and the least it is content with (never more than the limit)
AUDIO_KBPS = 64  # narration survives 64 kbit/s AAC well
MIN_VIDEO_KBPS = 40  # below this, a still-image slideshow turns to mush: refuse instead
BITS_PER_PIXEL = 0.02  # per frame: what a slow zoom over a still picture needs to look clean
MIN_SHORT_SIDE = 240
MAX_ENCODES = 3
RETRY_SHRINK = 0.7  # after a 413, aim this far under the size Discord refused
REQUEST_TOO_LARGE = 40005


def upload_limit_for(guild: discord.Guild | None) -> int:
    """What the bot may post in `guild`: its limit by boost level (10 MiB; 50 / 100 MiB at
    level 2 / 3), not any interaction's, which is the invoking user's (their Nitro included).
    Outside a guild (or one not in the cache): 10 MiB."""
    return (
        guild.filesize_limit if guild is not None else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
    )


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
    cannot fit."""
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
    log.info("re-encoded %s to %s (%.0f %% of the %s limit; %d kbit/s video, %dx%d)",
             source.name, format_size(size), 100 * size / limit_bytes, format_size(limit_bytes),
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


def format_size(size: float) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
    return f"{max(1, round(size / 1024))} KB"


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: bool
    note: str  # one or two sentences for the progress message
    message_id: int | None = None


class VideoDelivery:
    """Posts one job's video as a reply to its progress message, mentioning the requester."""

    def __init__(
        self,
        *,
        channel: discord.abc.Messageable,
        job_id: int,
        user_id: int,
        title: str,
        upload_limit: int,
        reference: discord.MessageReference | None,
        kept_as: str,
        preset: str,
        timeout: float,
        note: str = "",
    ) -> None:
        self.channel = channel
        self.note = note  # said with the video, e.g. "Version 2: scene 3 changed."
        self.job_id = job_id
        self.user_id = user_id
        self.title = title
        self.upload_limit = upload_limit
        self.reference = reference
        self.kept_as = kept_as
        self.preset = preset
        self.timeout = timeout

    async def deliver(self, video: Path, duration: float) -> DeliveryOutcome:
        """Never raises (but for cancellation): every outcome is told to the user."""
        fitted = video.with_name(f"{video.stem}.fit.mp4")
        try:
            return await self._deliver(video, fitted, duration)
        except MediaError as exc:
            log.error("job %d: re-encoding to fit failed: %s\n%s", self.job_id, exc, exc.detail)
            return await self._refused(f"re-encoding it to fit the upload limit failed ({exc})")
        except discord.HTTPException as exc:
            log.error("job %d: the upload failed: %s %s", self.job_id, exc.status, exc.text)
            return await self._refused(f"Discord refused the upload ({exc.status}: {exc.text})")
        finally:
            fitted.unlink(missing_ok=True)

    async def _deliver(self, video: Path, fitted: Path, duration: float) -> DeliveryOutcome:
        limit = self.upload_limit
        candidate = video
        if video.stat().st_size > limit:
            made = await self._fit(video, fitted, limit, duration)
            if made is None:
                return await self._too_long(duration, limit)
            candidate = made
        try:
            message = await self._upload(candidate, video, limit)
        except discord.HTTPException as exc:
            if exc.code != REQUEST_TOO_LARGE and exc.status != 413:
                raise
            # Discord's real limit is smaller than the one it reported: aim well under.
            refused = candidate.stat().st_size
            limit = int(min(refused, discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES) * RETRY_SHRINK)
            log.warning("job %d: Discord refused %s as too large; re-encoding for %s",
                        self.job_id, format_size(refused), format_size(limit))  # fmt: skip
            made = await self._fit(video, fitted, limit, duration)
            if made is None:
                return await self._too_long(duration, limit)
            candidate = made
            message = await self._upload(candidate, video, limit)
        size = candidate.stat().st_size
        note = f"Posted below ({format_duration(duration)}, {format_size(size)})."
        if candidate != video:
            note += (
                f" Re-encoded to fit this server's {format_size(limit)} upload limit; the "
                "full-quality file is kept on the bot's host."
            )
        return DeliveryOutcome(True, note, message.id)

    async def _fit(self, video: Path, out: Path, limit: int, duration: float) -> Path | None:
        return await fit_to_limit(video, out, limit, duration=duration, preset=self.preset,
                                  timeout=self.timeout)  # fmt: skip

    async def _upload(self, candidate: Path, original: Path, limit: int) -> discord.Message:
        text = f"<@{self.user_id}> your video **{_plain(self.title)}** is ready."
        if self.note:
            text += f" {self.note}"
        if candidate != original:
            text += f" (Re-encoded to fit this server's {format_size(limit)} upload limit.)"
        return await self.channel.send(
            text,
            file=discord.File(candidate, filename=_filename(self.title, self.job_id)),
            allowed_mentions=mention_only(discord.Object(self.user_id)),
            # None (no progress message was ever posted) sends a plain message; discord.py
            # accepts it, its overloads just do not say so.
            reference=self.reference,  # type: ignore[arg-type]
        )

    async def _too_long(self, duration: float, limit: int) -> DeliveryOutcome:
        note = (
            f"Too long to post here: {format_duration(duration)} of video does not fit this "
            f"server's {format_size(limit)} upload limit, even re-encoded at the lowest quality "
            f"worth sending. The file is kept on the bot's host as `{self.kept_as}`: ask the "
            "bot's operator for it, or split the script into shorter videos."
        )
        return await self._tell(note)

    async def _refused(self, why: str) -> DeliveryOutcome:
        note = (
            f"The video is rendered, but {why}. The file is kept on the bot's host as "
            f"`{self.kept_as}`: ask the bot's operator for it."
        )
        return await self._tell(note)

    async def _tell(self, note: str) -> DeliveryOutcome:
        text = f"<@{self.user_id}> **{_plain(self.title)}**: {note}"
        try:
            await self.channel.send(
                text[:2000],
                allowed_mentions=mention_only(discord.Object(self.user_id)),
                reference=self.reference,  # type: ignore[arg-type]  # None: see _upload
            )
        except discord.HTTPException:
            log.exception("job %d: could not tell the user about the video", self.job_id)
        return DeliveryOutcome(False, note)


def _plain(title: str) -> str:
    return discord.utils.escape_mentions(discord.utils.escape_markdown(title))[:200]


def _filename(title: str, job_id: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:60]
    return f"{slug or 'reelbot'}-{job_id}.mp4"
