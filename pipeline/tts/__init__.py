"""Text-to-speech providers, chosen by `[tts] provider`."""

from __future__ import annotations

import httpx

from ..config import Settings
from .base import TTSProvider
from .espeak import EspeakTTS
from .fallback import FallbackTTS
from .openai import OpenAISpeechTTS

__all__ = ["EspeakTTS", "FallbackTTS", "OpenAISpeechTTS", "TTSProvider", "make_tts"]


def make_tts(settings: Settings, client: httpx.AsyncClient) -> TTSProvider:
    config = settings.tts
    if config.provider == "espeak":
        return EspeakTTS()
    key = settings.secrets.tts_api_key
    server = OpenAISpeechTTS(config, client, api_key=key.get_secret_value() if key else None)
    if config.fallback_to_espeak:
        return FallbackTTS(server, EspeakTTS())
    return server
