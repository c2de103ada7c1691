"""An OpenAI-compatible speech server: OpenAI itself, Kokoro-FastAPI, openedai-speech, LocalAI.

`POST {base_url}/audio/speech` with OpenAI's published request (tests/contracts/): `model`,
`input`, `voice`, `response_format: "wav"`, `speed`, and `instructions` only for the models that
take them (gpt-4o-mini-tts; not tts-1 or tts-1-hd, nor Kokoro). An espeak-ng voice name
(`en-us`) is never sent: it would be refused, or spoken by some other voice.

Servers that stream WAV (OpenAI, Kokoro-FastAPI) write 0xFFFFFFFF in the RIFF and data sizes,
since they cannot know them when the header goes out: the file is written with its true sizes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import httpx

from ..config import TTSConfig
from ..errors import ReelbotError, TTSError
from .espeak import EspeakTTS
from .wav import repair_wav

__all__ = ["OpenAISpeechTTS", "takes_instructions"]

log = logging.getLogger(__name__)
# The shape of an espeak-ng voice (a language tag, maybe with a variant: en, en-us, en-gb-x-rp,
# en+f3). Only a voice of this shape is looked up in espeak-ng's list (a subprocess, once).
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)*(\+[a-z0-9_-]+)?$", re.IGNORECASE)


def takes_instructions(model: str) -> bool:
    """OpenAI: "Does not work with tts-1 or tts-1-hd"; of the published models, the
    gpt-4o-mini-tts family takes them (Kokoro-FastAPI has no such field)."""
    return model.startswith("gpt-4o-mini-tts")


class OpenAISpeechTTS:
    name = "openai"

    def __init__(
        self, config: TTSConfig, client: httpx.AsyncClient, *, api_key: str | None = None
    ) -> None:
        self.config = config
        self.client = client
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._espeak = EspeakTTS()
        self._espeak_lock = asyncio.Lock()  # every scene starts at once: list the voices once
        if config.instructions and not takes_instructions(config.model):
            log.warning("[tts] instructions are not sent: the model %s does not take them "
                        "(gpt-4o-mini-tts does)", config.model)  # fmt: skip

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        where = f"the speech server at {self.config.base_url}"
        if await self._is_espeak_voice(voice):
            raise TTSError(
                f"{voice!r} is an espeak-ng voice, which {where} does not have; name one of "
                "its own voices ([tts] voice, or the script's voice:), e.g. alloy"
            )
        url = f"{self.config.base_url.rstrip('/')}/audio/speech"
        body: dict[str, Any] = {
            "model": self.config.model,
            "input": text,
            "voice": voice,
            "response_format": "wav",
            "speed": speed,
        }
        if self.config.instructions and takes_instructions(self.config.model):
            body["instructions"] = self.config.instructions
        for attempt in range(1, self.config.max_attempts + 1):
            last = attempt == self.config.max_attempts
            try:
                response = await self.client.post(
                    url, json=body, headers=self._headers, timeout=self.config.timeout
                )
            except httpx.TimeoutException:
                if last:
                    raise TTSError(f"{where} did not answer in time", retryable=True) from None
            except httpx.TransportError:
                if last:
                    raise TTSError(f"{where} could not be reached", retryable=True) from None
            else:
                if response.status_code == 200:
                    try:
                        out.write_bytes(repair_wav(response.content))
                    except ValueError as exc:
                        raise TTSError(f"{where} answered {exc}", retryable=True) from None
                    return
                if response.status_code < 500 or last:
                    raise TTSError(
                        f"{where} refused the request (HTTP {response.status_code}): "
                        f"{_reason(response)}",
                        retryable=response.status_code >= 500,
                    )
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    async def _is_espeak_voice(self, voice: str) -> bool:
        if not _LANGUAGE_TAG.match(voice):
            return False  # alloy, af_bella, af_bella+af_sky: not the shape of an espeak-ng voice
        try:
            async with self._espeak_lock:
                return await self._espeak.knows_voice(voice)
        except ReelbotError:  # espeak-ng is not installed: nothing to confuse it with
            return False


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict):
        detail = data.get("detail") or data.get("error") or data.get("message")
        if isinstance(detail, dict):
            detail = detail.get("message")
        if detail:
            return str(detail)[:200]
    return response.reason_phrase
