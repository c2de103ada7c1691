"""Kokoro-FastAPI with word timings: `POST /dev/captioned_speech` (outside `/v1`).

Asked with `stream: false`, it answers one JSON object: the audio in base64 and, for every
word it spoke, when the word starts and ends (`{audio, audio_format, timestamps: [{word,
start_time, end_time}]}`, remsky/Kokoro-FastAPI `api/src/routers/development.py`). Captions
follow those times; the words come back as the server normalised them ("200" may be "two
hundred"), so they are matched to the narration's words (`align.py`). The voices are those of
`GET {base_url}/audio/voices`.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
from pathlib import Path
from typing import Any

import httpx

from ..config import TTSConfig
from ..errors import TTSError
from .align import align_words, letters_key, text_words
from .base import VoiceInfo, WordMark
from .wav import repair_wav

__all__ = ["KokoroTTS", "kokoro_root"]


def kokoro_root(base_url: str) -> str:
    """The server's root: `[tts] base_url` without its `/v1`."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1") if root.endswith("/v1") else root


class KokoroTTS:
    name = "kokoro"

    def __init__(
        self, config: TTSConfig, client: httpx.AsyncClient, *, api_key: str | None = None
    ) -> None:
        self.config = config
        self.client = client
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._where = f"the Kokoro server at {kokoro_root(config.base_url)}"

    async def list_voices(self) -> list[VoiceInfo]:
        url = f"{self.config.base_url.rstrip('/')}/audio/voices"
        response = await self._send("GET", url, None)
        try:
            listed = response.json()["voices"]
            ids = [v["id"] if isinstance(v, dict) else v for v in listed]
        except (ValueError, KeyError, TypeError) as exc:
            raise TTSError(
                f"{self._where} listed its voices in a shape I cannot read: {exc}"
            ) from None
        return [VoiceInfo(str(v), "Kokoro voice", _voice_language(str(v))) for v in ids]

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        await self.synthesize_timed(text, voice=voice, speed=speed, out=out)

    async def synthesize_timed(
        self, text: str, *, voice: str, speed: float, out: Path
    ) -> list[WordMark] | None:
        body = {
            "model": self.config.model,
            "input": text,
            "voice": voice,
            "response_format": "wav",
            "speed": speed,
            "stream": False,
            "return_timestamps": True,
        }
        url = f"{kokoro_root(self.config.base_url)}/dev/captioned_speech"
        try:
            response = await self._send("POST", url, body)
        except TTSError as exc:
            if "not found" in str(exc).lower() and not exc.retryable:
                raise TTSError(await self._unknown_voice(voice)) from None
            raise
        try:
            data = response.json()
            audio = repair_wav(base64.b64decode(data["audio"], validate=True))
            stamps = data.get("timestamps") or []
            spoken = [(str(s["word"]), float(s["start_time"])) for s in stamps]
        except (ValueError, KeyError, TypeError) as exc:
            raise TTSError(
                f"{self._where} answered audio I cannot read: {exc}", retryable=True
            ) from None
        out.write_bytes(audio)
        pieces = [(letters_key(word), start) for word, start in spoken]
        pieces = [(k, t) for k, t in pieces if k]
        if not pieces:
            return None  # no timings: the captions are measured from the audio instead
        words = text_words(text)
        return align_words(words, [letters_key(w.text) for w in words], pieces)

    async def _unknown_voice(self, voice: str) -> str:
        try:
            ids = [v.id for v in await self.list_voices()]
        except TTSError:
            ids = []
        close = difflib.get_close_matches(voice, ids, n=4, cutoff=0.75)
        hint = f" (close: {', '.join(close)})" if close else ""
        return f"{self._where} has no voice named {voice!r}{hint}; `reelbot voices` lists them"

    async def _send(self, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
        for attempt in range(1, self.config.max_attempts + 1):
            last = attempt == self.config.max_attempts
            try:
                response = await self.client.request(
                    method, url, json=body, headers=self._headers, timeout=self.config.timeout
                )
            except httpx.TimeoutException:
                if last:
                    where = self._where
                    raise TTSError(f"{where} did not answer in time", retryable=True) from None
            except httpx.TransportError:
                if last:
                    raise TTSError(f"{self._where} could not be reached", retryable=True) from None
            else:
                if response.status_code == 200:
                    return response
                if response.status_code < 500 or last:
                    raise TTSError(
                        f"{self._where} refused the request (HTTP {response.status_code}): "
                        f"{_reason(response)}",
                        retryable=response.status_code >= 500,
                    )
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")


def _voice_language(voice: str) -> str | None:
    """Kokoro's voice names start with a language letter: a=American, b=British English, ..."""
    languages = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr", "h": "hi", "i": "it",
                 "j": "ja", "p": "pt-br", "z": "zh"}  # fmt: skip
    return languages.get(voice[:1]) if voice[1:2] in ("f", "m") and voice[2:3] == "_" else None


def _reason(response: httpx.Response) -> str:
    """FastAPI's `{"detail": {"message": ...}}` (or `{"detail": "..."}`) in a few words."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("error")
    if isinstance(detail, list):  # a validation error: where, and what
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)[:200] if detail else response.reason_phrase
