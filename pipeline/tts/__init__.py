"""Text-to-speech providers, chosen by `[tts] provider`."""

from __future__ import annotations

from typing import Literal

import httpx

from ..config import DEFAULT_VOICES, Settings
from .base import TTSProvider, close_tts
from .espeak import EspeakTTS
from .fallback import FallbackTTS
from .kokoro import KokoroTTS
from .openai import OpenAISpeechTTS
from .piper import (
    PiperTTS,
    default_piper_voice,
    find_piper_voices,
    piper_installed,
    piper_problem,
)

__all__ = [
    "EspeakTTS",
    "FallbackTTS",
    "KokoroTTS",
    "OpenAISpeechTTS",
    "PiperTTS",
    "TTSProvider",
    "check_tts",
    "close_tts",
    "default_voice",
    "make_tts",
    "tts_provider",
]

Provider = Literal["espeak", "piper", "openai", "kokoro"]


def tts_provider(settings: Settings) -> Provider:
    """The provider `[tts] provider` means: "auto" is Piper when it is installed with a voice
    (a configured voice that is missing is an error then, not a reason to switch), else
    espeak-ng."""
    config = settings.tts
    if config.provider == "auto":
        asked = config.piper_voice is not None or config.piper_voice_dir is not None
        usable = piper_installed() and (asked or piper_problem(config) is None)
        return "piper" if usable else "espeak"
    return config.provider


def check_tts(settings: Settings) -> None:
    """Raise ConfigError (one line naming what to install or set) when the chosen provider
    cannot speak at all: before a render starts, not in its first scene."""
    if tts_provider(settings) == "piper":
        find_piper_voices(settings.tts)


def default_voice(settings: Settings) -> str:
    """The voice of a scene that names none: `[tts] voice` when set, else the provider's."""
    config = settings.tts
    if config.voice is not None:
        return config.voice
    provider = tts_provider(settings)
    if provider == "piper":
        return default_piper_voice(config)
    return DEFAULT_VOICES[provider]


def make_tts(settings: Settings, client: httpx.AsyncClient) -> TTSProvider:
    """The configured provider. Raises ConfigError (one line) when Piper or its voice is
    missing; close it with `close_tts` (Piper keeps a helper process per voice)."""
    config = settings.tts
    provider = tts_provider(settings)
    if provider == "espeak":
        return EspeakTTS()
    if provider == "piper":
        return PiperTTS(config)
    key = settings.secrets.tts_api_key
    secret = key.get_secret_value() if key else None
    server: TTSProvider
    if provider == "kokoro":
        server = KokoroTTS(config, client, api_key=secret)
    else:
        server = OpenAISpeechTTS(config, client, api_key=secret)
    if config.fallback_to_espeak:
        return FallbackTTS(server, EspeakTTS())
    return server
