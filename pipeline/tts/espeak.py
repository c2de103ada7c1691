"""espeak-ng, the embedded default: local, offline, a subprocess per scene.

The narration is spoken by libespeak-ng through a small helper process (`_espeak_words.py`),
which writes the same WAV the `espeak-ng` command would and also reports where every word
starts (the library's own word events, in samples). Captions are timed from those. Without the
library (never the case with the Debian package, which depends on it) the `espeak-ng` command
is used and captions fall back to proportional timing.
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
from pathlib import Path

from ..errors import MediaError, TTSError
from ..proc import run_program
from . import _espeak_words
from .base import WordMark

ESPEAK_DEFAULT_WPM = 175
HELPER = Path(_espeak_words.__file__)
# The helper's exit statuses that come with one plain line on stderr (see its docstring).
HELPER_PLAIN_EXITS = frozenset({2, 3, 4, 5})
log = logging.getLogger(__name__)
# libespeak-ng opens an audio device through pcaudiolib even when it only writes WAVs, and
# PulseAudio's client then makes runtime folders in $HOME/.config and $TMPDIR. A server address
# that cannot exist (/dev/null is no folder) keeps it from trying: nothing is written there.
NO_SOUND_SERVER = {"PULSE_SERVER": "unix:/dev/null/reelbot-plays-no-sound"}


class EspeakTTS:
    name = "espeak"

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._voice_names: frozenset[str] | None = None
        self._library: bool | None = None

    async def _voices(self) -> frozenset[str]:
        """Language codes, voice names and voice files espeak-ng knows, lower-cased."""
        if self._voice_names is None:
            listing = await run_program(["espeak-ng", "--voices"], what="espeak-ng --voices",
                                        timeout=30, env=NO_SOUND_SERVER)  # fmt: skip
            names: set[str] = set()
            for row in listing.decode("utf-8", "replace").splitlines()[1:]:
                columns = row.split()
                if len(columns) >= 5:
                    names.update(c.lower() for c in (columns[1], columns[3], columns[4]))
                    names.update(c.lower() for c in columns[5:])
            self._voice_names = frozenset(names)
        return self._voice_names

    async def knows_voice(self, voice: str) -> bool:
        """Is `voice` one of espeak-ng's (a language code, voice name or voice file)?"""
        return _known_voice(voice, await self._voices())

    def _has_library(self) -> bool:
        if self._library is None:
            try:
                ctypes.CDLL(_espeak_words.LIBRARY)
                self._library = True
            except OSError:
                self._library = False
        return self._library

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        await self.synthesize_timed(text, voice=voice, speed=speed, out=out)

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        """Speak `text` into `out`; return where each word starts (None without the library)."""
        # espeak-ng silently falls back to its default voice for a name it does not know.
        if not _known_voice(voice, await self._voices()):
            raise TTSError(
                f"espeak-ng has no voice named {voice!r} (try en-us, en-gb, fr, de, es; "
                "`espeak-ng --voices` lists them all)"
            )
        wpm = max(80, min(450, round(ESPEAK_DEFAULT_WPM * speed)))
        if self._has_library():
            # Python in isolated mode, the helper by path: nothing of ours is imported there.
            argv = [sys.executable, "-I", str(HELPER), voice, str(wpm), str(out)]
        else:
            # Text goes in on stdin, so nothing the user wrote can be read as an option.
            argv = ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out)]
        try:
            report = await run_program(argv, what="espeak-ng", timeout=self.timeout,
                                       stdin=text.encode("utf-8"), env=NO_SOUND_SERVER)  # fmt: skip
        except MediaError as exc:
            raise _speech_error(exc, helper=argv[0] == sys.executable) from None
        if not self._has_library():
            return None
        return parse_word_report(report)


def _speech_error(exc: MediaError, *, helper: bool) -> TTSError:
    """The helper's one plain line, or espeak-ng's last; anything longer (a traceback, with
    machine paths) goes to the log, and the user reads the reason found in it."""
    log.debug("espeak-ng failed: %s", exc.detail)
    lines = exc.detail.strip().splitlines()
    if lines and (exc.returncode in HELPER_PLAIN_EXITS if helper else len(lines) == 1):
        return TTSError(f"espeak-ng: {lines[-1][:300]}")
    return TTSError(str(exc))


def parse_word_report(report: bytes) -> list[WordMark]:
    """The helper's JSON report → word onsets in seconds."""
    try:
        data = json.loads(report)
        rate = int(data["rate"])
        return [
            WordMark(start=int(start), length=int(length), seconds=int(sample) / rate)
            for start, length, sample in data["words"]
        ]
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise TTSError(f"espeak-ng reported word timings that cannot be read: {exc}") from None


def _known_voice(voice: str, names: frozenset[str]) -> bool:
    base = voice.split("+", 1)[0].strip().lower()  # "en-us+f3": a voice plus a variant
    return bool(base) and base in names
