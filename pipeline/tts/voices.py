"""What a provider offers: `reelbot voices`, and the Discord `/render voice:` autocomplete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from .base import ListsVoices, TTSProvider, VoiceInfo

__all__ = ["OPENAI_VOICES", "VoiceCatalogue", "list_voices_of", "match_voices"]

# The OpenAI speech API's voices (platform.openai.com, audio/speech "voice").
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                 "shimmer", "verse", "marin", "cedar")  # fmt: skip


async def list_voices_of(tts: TTSProvider) -> list[VoiceInfo]:
    """The voices `tts` offers: its own list, or OpenAI's fixed one."""
    if isinstance(tts, ListsVoices):
        return await tts.list_voices()
    return [VoiceInfo(v, "OpenAI speech voice") for v in OPENAI_VOICES]


def match_voices(voices: Sequence[VoiceInfo], typed: str, limit: int = 25) -> list[VoiceInfo]:
    """At most `limit` voices for what was typed: ids starting with it first, then ids and
    labels containing it; everything (in order) for nothing typed."""
    wanted = typed.strip().casefold()
    if not wanted:
        return list(voices[:limit])
    starts = [v for v in voices if v.id.casefold().startswith(wanted)]
    inside = [v for v in voices if v not in starts and (wanted in v.id.casefold()
              or wanted in v.label.casefold())]  # fmt: skip
    return (starts + inside)[:limit]


class VoiceCatalogue:
    """The voice list, fetched once and kept for `ttl` seconds (an autocomplete must answer
    well within Discord's 3 s). A failed fetch is not kept: the next call tries again."""

    def __init__(self, fetch: Callable[[], Awaitable[list[VoiceInfo]]], ttl: float = 600) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._voices: list[VoiceInfo] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def voices(self) -> list[VoiceInfo]:
        async with self._lock:
            if self._voices is None or time.monotonic() - self._at > self.ttl:
                self._voices = await self._fetch()
                self._at = time.monotonic()
            return self._voices
