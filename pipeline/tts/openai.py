"""An OpenAI-compatible speech server (Kokoro-FastAPI, openedai-speech, LocalAI)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from ..config import TTSConfig
from ..errors import TTSError


class OpenAISpeechTTS:
    name = "openai"

    def __init__(
        self, config: TTSConfig, client: httpx.AsyncClient, *, api_key: str | None = None
    ) -> None:
        self.config = config
        self.client = client
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def synthesize(self, text: str, *, voice: str, speed: float, out: Path) -> None:
        url = f"{self.config.base_url.rstrip('/')}/audio/speech"
        body = {
            "model": self.config.model,
            "input": text,
            "voice": voice,
            "response_format": "wav",
            "speed": speed,
        }
        where = f"the speech server at {self.config.base_url}"
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
                    out.write_bytes(response.content)
                    return
                if response.status_code < 500 or last:
                    raise TTSError(
                        f"{where} refused the request (HTTP {response.status_code}): "
                        f"{_reason(response)}",
                        retryable=response.status_code >= 500,
                    )
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")


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
