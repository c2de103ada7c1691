"""Posting the finished video: within the upload limit, or a plain word why not.

The limit is the guild's (`Guild.filesize_limit`: 10 MiB, or 50 / 100 MiB in a server boosted
to level 2 / 3), the limit that binds the bot's own `channel.send`; not the interaction's
`attachment_size_limit`, which is what the *invoking user* may upload (their Nitro included).
A video over it is re-encoded to 85–95 % of the allowance by `pipeline/fit.py`; if even the
lowest quality worth sending does not fit, the bot says the video is too long to post and where
the file is kept. A 413 from Discord (code 40005: the real limit was smaller) re-encodes smaller
once and tries again. This module runs no ffmpeg of its own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import discord

from pipeline.errors import MediaError
from pipeline.fit import fit_to_limit

from .answers import mention_only
from .text import format_duration, format_size, plain

__all__ = [
    "REQUEST_TOO_LARGE",
    "RETRY_SHRINK",
    "DeliveryOutcome",
    "VideoDelivery",
    "upload_limit_for",
    "video_filename",
]

log = logging.getLogger(__name__)

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
        text = f"<@{self.user_id}> your video **{plain(self.title)}** is ready."
        if self.note:
            text += f" {self.note}"
        if candidate != original:
            text += f" (Re-encoded to fit this server's {format_size(limit)} upload limit.)"
        return await self.channel.send(
            text,
            file=discord.File(candidate, filename=video_filename(self.title, self.job_id)),
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
        text = f"<@{self.user_id}> **{plain(self.title)}**: {note}"
        try:
            await self.channel.send(
                text[:2000],
                allowed_mentions=mention_only(discord.Object(self.user_id)),
                reference=self.reference,  # type: ignore[arg-type]  # None: see _upload
            )
        except discord.HTTPException:
            log.exception("job %d: could not tell the user about the video", self.job_id)
        return DeliveryOutcome(False, note)


def video_filename(title: str, job_id: int) -> str:
    """The name a job's video is posted under: its title as a slug, and the job."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:60]
    return f"{slug or 'reelbot'}-{job_id}.mp4"
