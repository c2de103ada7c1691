"""The voices a `voice:` option suggests as it is typed (`/render`, `/settings`): the speech
provider's list, kept a while (`VoiceCatalogue`), matched to what is typed, within Discord's
3 seconds for an autocomplete answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from discord import app_commands

from pipeline.errors import ReelbotError
from pipeline.tts.base import TTSProvider, VoiceInfo
from pipeline.tts.voices import VoiceCatalogue, list_voices_of, match_voices

from .text import truncate

__all__ = ["AUTOCOMPLETE_SECONDS", "VOICE_MAX_CHARS", "VoiceChoices"]

VOICE_MAX_CHARS = 60  # the longest `voice:` a command takes
AUTOCOMPLETE_SECONDS = 2.0  # Discord waits 3 s for the choices

log = logging.getLogger(__name__)


class VoiceChoices:
    def __init__(self, tts: Callable[[], TTSProvider]) -> None:
        self.catalogue = VoiceCatalogue(lambda: list_voices_of(tts()))

    async def matching(self, typed: str) -> list[app_commands.Choice[str]]:
        """The provider's voices matching `typed` (at most 25); none if the list is slow or
        cannot be had (said in the log, not to the person typing)."""
        try:
            async with asyncio.timeout(AUTOCOMPLETE_SECONDS):
                voices = await self.catalogue.voices()
        except (TimeoutError, ReelbotError) as exc:
            log.warning("no voices to suggest: %s", exc or "the list took too long")
            return []
        return [
            app_commands.Choice(name=choice_name(v), value=v.id)
            for v in match_voices(voices, typed)
            if len(v.id) <= VOICE_MAX_CHARS
        ]


def choice_name(voice: VoiceInfo) -> str:
    return truncate(f"{voice.id} · {voice.label}", 100)
