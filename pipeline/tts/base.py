from __future__ import annotations

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
    """A provider that can also say when each word is spoken (espeak-ng)."""

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        """Like `synthesize`; returns the words' onsets, or None when it cannot tell."""
        ...
