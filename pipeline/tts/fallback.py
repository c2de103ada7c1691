"""Use a second provider when the first one cannot be reached."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import TTSError
from .base import TTSProvider, VoiceInfo, WordMark, WordTimedTTS, close_tts

log = logging.getLogger(__name__)
FALLBACK_VOICE = "en-us"


class FallbackTTS:
    def __init__(self, primary: TTSProvider, fallback: TTSProvider) -> None:
        self.primary = primary
        self.fallback = fallback

    @property
    def name(self) -> str:
        return self.primary.name

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        await self.synthesize_timed(text, voice=voice, speed=speed, out=out)

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        """The primary's words when it reports them (Kokoro); the fallback's when it spoke."""
        try:
            return await _speak(self.primary, text, voice=voice, speed=speed, out=out)
        except TTSError as exc:
            if not exc.retryable:
                raise
            log.warning("%s; narrating with %s instead", exc, self.fallback.name)
            return await _speak(self.fallback, text, voice=FALLBACK_VOICE, speed=speed, out=out)

    async def list_voices(self) -> list[VoiceInfo]:
        from .voices import list_voices_of

        return await list_voices_of(self.primary)

    async def aclose(self) -> None:
        await close_tts(self.primary)
        await close_tts(self.fallback)


async def _speak(
    tts: TTSProvider, text: str, *, voice: str, speed: float, out: Path
) -> list[WordMark] | None:
    if isinstance(tts, WordTimedTTS):
        return await tts.synthesize_timed(text, voice=voice, speed=speed, out=out)
    await tts.synthesize(text, voice=voice, speed=speed, out=out)
    return None
