"""Use a second provider when the first one cannot be reached."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import TTSError
from .base import TTSProvider

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
        try:
            await self.primary.synthesize(text, voice=voice, speed=speed, out=out)
        except TTSError as exc:
            if not exc.retryable:
                raise
            log.warning("%s; narrating with %s instead", exc, self.fallback.name)
            await self.fallback.synthesize(text, voice=FALLBACK_VOICE, speed=speed, out=out)
