"""espeak-ng, the embedded default: local, offline, a subprocess per scene."""

from __future__ import annotations

from pathlib import Path

from ..errors import MediaError, TTSError
from ..proc import run_program

ESPEAK_DEFAULT_WPM = 175


class EspeakTTS:
    name = "espeak"

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._voice_names: frozenset[str] | None = None

    async def _voices(self) -> frozenset[str]:
        """Language codes, voice names and voice files espeak-ng knows, lower-cased."""
        if self._voice_names is None:
            listing = await run_program(["espeak-ng", "--voices"], what="espeak-ng --voices",
                                        timeout=30)  # fmt: skip
            names: set[str] = set()
            for row in listing.decode("utf-8", "replace").splitlines()[1:]:
                columns = row.split()
                if len(columns) >= 5:
                    names.update(c.lower() for c in (columns[1], columns[3], columns[4]))
                    names.update(c.lower() for c in columns[5:])
            self._voice_names = frozenset(names)
        return self._voice_names

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        # espeak-ng silently falls back to its default voice for a name it does not know.
        if not _known_voice(voice, await self._voices()):
            raise TTSError(
                f"espeak-ng has no voice named {voice!r} (try en-us, en-gb, fr, de, es; "
                "`espeak-ng --voices` lists them all)"
            )
        wpm = max(80, min(450, round(ESPEAK_DEFAULT_WPM * speed)))
        # Text goes in on stdin, so nothing the user wrote can be read as an option.
        argv = ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out)]
        try:
            await run_program(
                argv, what="espeak-ng", timeout=self.timeout, stdin=text.encode("utf-8")
            )
        except MediaError as exc:
            raise TTSError(f"{exc}: {exc.detail[-300:]}".rstrip(": ")) from None


def _known_voice(voice: str, names: frozenset[str]) -> bool:
    base = voice.split("+", 1)[0].strip().lower()  # "en-us+f3": a voice plus a variant
    return bool(base) and base in names
