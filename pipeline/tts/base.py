from __future__ import annotations

from pathlib import Path
from typing import Protocol


class TTSProvider(Protocol):
    """Speaks `text` into a WAV file at `out`."""

    @property
    def name(self) -> str: ...

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None: ...
