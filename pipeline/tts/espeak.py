"""espeak-ng, the small offline fallback: local, a subprocess per scene.

The narration is spoken by libespeak-ng through a small helper process (`_espeak_words.py`),
which writes the same WAV the `espeak-ng` command would and also reports where every word
starts (the library's own word events, in samples). Captions are timed from those. Without the
library (never the case with the Debian package, which depends on it) the `espeak-ng` command
is used and captions fall back to proportional timing.

A voice is accepted when espeak-ng itself would choose one for it, by name, voice file or
language (`en-gb`, `gmw/en-GB-x-rp`, `fr`, `zh`, `pt-br`, `en-us+f3`): the helper asks the
library (`--resolve`), once per voice. espeak-ng on its own would speak an unknown voice with
its default voice; reelbot refuses it instead, naming a few close voices that it does accept.
"""

from __future__ import annotations

import asyncio
import ctypes
import difflib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import MediaError, TTSError
from ..proc import run_program
from . import _espeak_words
from .base import VoiceInfo, WordMark

__all__ = ["EspeakTTS", "EspeakVoice", "parse_voice_listing", "parse_word_report"]

ESPEAK_DEFAULT_WPM = 175
HELPER = Path(_espeak_words.__file__)
# The helper's exit statuses that come with one plain line on stderr (see its docstring).
HELPER_PLAIN_EXITS = frozenset({2, 3, 4, 5})
log = logging.getLogger(__name__)
# libespeak-ng opens an audio device through pcaudiolib even when it only writes WAVs, and
# PulseAudio's client then makes runtime folders in $HOME/.config and $TMPDIR. A server address
# that cannot exist (/dev/null is no folder) keeps it from trying: nothing is written there.
NO_SOUND_SERVER = {"PULSE_SERVER": "unix:/dev/null/reelbot-plays-no-sound"}
_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+)\s+\d+\)")


@dataclass(frozen=True)
class EspeakVoice:
    """One row of `espeak-ng --voices`."""

    language: str  # "en-gb"
    name: str  # "English (Great Britain)" (the listing shows spaces as "_")
    file: str  # "gmw/en"
    other_languages: tuple[str, ...]  # ("en",): languages it also speaks, by priority

    def spellings(self) -> tuple[str, ...]:
        """Every way of asking for this voice: language, name, file, its last part."""
        return (self.language, self.name, self.file, self.file.rsplit("/", 1)[-1],
                *self.other_languages)  # fmt: skip


def parse_voice_listing(listing: str) -> list[EspeakVoice]:
    """The rows of `espeak-ng --voices`: `Pty Language Age/Gender VoiceName File Other...`."""
    voices = []
    for row in listing.splitlines()[1:]:
        columns = row.split()
        if len(columns) < 5:
            continue
        others = tuple(_OTHER_LANGUAGE.findall(" ".join(columns[5:])))
        voices.append(EspeakVoice(columns[1], columns[3].replace("_", " "), columns[4], others))
    return voices


class EspeakTTS:
    name = "espeak"

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._listing: list[EspeakVoice] | None = None
        self._library: bool | None = None
        self._resolved: dict[str, bool] = {}
        self._resolving = asyncio.Lock()

    async def listing(self) -> list[EspeakVoice]:
        """The voices `espeak-ng --voices` lists."""
        if self._listing is None:
            listing = await run_program(["espeak-ng", "--voices"], what="espeak-ng --voices",
                                        timeout=30, env=NO_SOUND_SERVER)  # fmt: skip
            self._listing = parse_voice_listing(listing.decode("utf-8", "replace"))
        return self._listing

    async def list_voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(v.language, f"{v.name} ({v.file})", v.language)
            for v in sorted(await self.listing(), key=lambda v: v.language)
        ]

    def _has_library(self) -> bool:
        if self._library is None:
            try:
                ctypes.CDLL(_espeak_words.LIBRARY)
                self._library = True
            except OSError:
                self._library = False
        return self._library

    async def resolves(self, voices: list[str]) -> list[bool]:
        """Whether espeak-ng chooses a voice for each of `voices` (as `espeak-ng -v` would)."""
        if self._has_library():
            argv = [sys.executable, "-I", str(HELPER), "--resolve", *voices]
            try:
                report = json.loads(await run_program(argv, what="espeak-ng", timeout=30,
                                                      env=NO_SOUND_SERVER))  # fmt: skip
            except (MediaError, ValueError) as exc:
                raise TTSError(f"espeak-ng could not look up voices: {exc}") from None
            return [bool(found) for found in report]
        # Without the library: what the listing names (the command falls back the same way).
        known = {s.lower() for v in await self.listing() for s in v.spellings()}
        return [v.split("+", 1)[0].strip().lower() in known for v in voices]

    async def knows_voice(self, voice: str) -> bool:
        """Does espeak-ng choose a voice for `voice` (as `espeak-ng -v` would)?"""
        async with self._resolving:  # every scene starts at once: one look-up per voice
            if voice not in self._resolved:
                self._resolved[voice] = (await self.resolves([voice]))[0]
        return self._resolved[voice]

    async def check_voice(self, voice: str) -> None:
        """Raise TTSError, naming close voices that do resolve, if `voice` does not."""
        if not await self.knows_voice(voice):
            raise TTSError(await self._unknown(voice))

    async def _unknown(self, voice: str) -> str:
        # What a close spelling suggests: itself, or for a voice's name, its language.
        spellings: dict[str, str] = {}
        for v in await self.listing():
            for spelling in (v.language, *v.other_languages, v.file):
                spellings.setdefault(spelling.lower(), spelling)
            spellings.setdefault(v.name.strip().lower(), v.language)
            # "French (Belgium)": "french" suggests the voice's broadest language, "fr".
            broadest = min((v.language, *v.other_languages), key=len)
            spellings.setdefault(v.name.split(" (", 1)[0].strip().lower(), broadest)
        wanted = voice.split("+", 1)[0].strip().lower()
        close = difflib.get_close_matches(wanted, list(spellings), n=8, cutoff=0.7)
        candidates = list(dict.fromkeys(spellings[c] for c in close))
        accepted = await self.resolves(candidates) if candidates else []
        shown = [c for c, ok in zip(candidates, accepted, strict=True) if ok][:4]
        hint = f" (close: {', '.join(shown)})" if shown else ""
        return f"espeak-ng has no voice named {voice!r}{hint}; `reelbot voices` lists them all"

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        await self.synthesize_timed(text, voice=voice, speed=speed, out=out)

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        """Speak `text` into `out`; return where each word starts (None without the library)."""
        # espeak-ng silently falls back to its default voice for a name it does not know.
        await self.check_voice(voice)
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
