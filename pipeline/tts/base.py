from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


class TTSProvider(Protocol):
    """Speaks `text` into a WAV file at `out`."""

    @property
    def name(self) -> str: ...

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None: ...


@dataclass(frozen=True)
class WordMark:
    """Where one word of the text starts in the audio, as reported by the synthesizer."""

    start: int  # index of the word's first character in the text
    length: int  # its length in characters
    seconds: float  # when it starts in the audio


@runtime_checkable
class WordTimedTTS(TTSProvider, Protocol):
    """A provider that can also say when each word is spoken (espeak-ng, Piper, Kokoro)."""

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        """Like `synthesize`; returns the words' onsets, or None when it cannot tell."""
        ...


@dataclass(frozen=True)
class VoiceInfo:
    """A voice a provider offers: `id` is what a script writes after `voice:`."""

    id: str
    label: str  # what it is, for people: "English (Great Britain) (gmw/en)"
    language: str | None = None


@runtime_checkable
class ListsVoices(Protocol):
    """A provider that can say which voices it offers."""

    async def list_voices(self) -> list[VoiceInfo]: ...


@runtime_checkable
class ClosableTTS(Protocol):
    """A provider holding something open (a helper process) until `aclose()`."""

    async def aclose(self) -> None: ...


async def close_tts(tts: object) -> None:
    """Close `tts` if it holds anything open."""
    if isinstance(tts, ClosableTTS):
        await tts.aclose()


@runtime_checkable
class SharesCPU(Protocol):
    """A provider that speaks on this machine's CPU (Piper): while it speaks it holds one of
    the render's encoder slots, so a clip encode never crowds out the narration that later
    clips wait for."""

    cpu_slot: asyncio.Semaphore | None
