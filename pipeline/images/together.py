"""Together.ai FLUX: one request per image, retried on rate limits and server faults."""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import logging
import random
import time
from pathlib import Path

import httpx

from ..artifact_checks import check_image
from ..config import ImagesConfig, LimitsConfig
from ..errors import ImageError
from ..image_slot import wait_before_retry
from .base import ImageRequest

log = logging.getLogger(__name__)


class TogetherImages:
    name = "together"

    def __init__(
        self,
        config: ImagesConfig,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        rng: random.Random | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or LimitsConfig()
        self.client = client
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._rng = rng or random.Random()

    async def generate(self, request: ImageRequest, out: Path) -> None:
        body = {
            "model": request.model,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "n": 1,
            "seed": request.seed,
            "response_format": "b64_json",
        }
        url = f"{self.config.base_url.rstrip('/')}/images/generations"
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                response = await self.client.post(
                    url, json=body, headers=self._headers, timeout=self.config.timeout
                )
            except httpx.TimeoutException:
                problem = f"did not answer within {self.config.timeout:.0f} s"
                delay = self._backoff(attempt)
            except httpx.TransportError as exc:
                problem = f"could not be reached ({type(exc).__name__})"
                delay = self._backoff(attempt)
            else:
                if response.status_code != 200:
                    problem, delay = self._judge(response, attempt, request)
                else:
                    try:
                        image = await self._image_bytes(response, request)
                        out.write_bytes(await asyncio.to_thread(check_image, image, self.limits))
                        return
                    except ImageError as bad:  # a bad answer is a server fault: retried
                        if not bad.retryable:
                            raise
                        problem = f"sent an unusable answer ({_without_name(bad)})"
                        delay = self._backoff(attempt)
            if attempt == attempts:
                raise ImageError(
                    f"Together.ai {problem}; gave up after {attempts} attempts. "
                    "Try again in a few minutes.",
                    retryable=True,
                )
            log.info("scene %d: Together.ai %s; retry %d in %.1f s",
                     request.scene, problem, attempt, delay)  # fmt: skip
            await wait_before_retry(delay)  # no retry for a render that is gone
        raise AssertionError("unreachable")

    def _judge(
        self, response: httpx.Response, attempt: int, request: ImageRequest
    ) -> tuple[str, float]:
        """Return (problem, delay) for a retryable answer; raise ImageError for a final one."""
        status = response.status_code
        reason = _error_message(response)
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            return "is rate-limiting requests (HTTP 429)", float(
                min(delay, self.config.backoff_max)
            )
        if status >= 500:
            return f"had a server error (HTTP {status})", self._backoff(attempt)
        raise ImageError(_final_message(status, reason, request.model))

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self._rng.random() / 2)

    async def _image_bytes(self, response: httpx.Response, request: ImageRequest) -> bytes:
        try:
            item = response.json()["data"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ImageError("Together.ai answered without an image", retryable=True) from None
        if item.get("b64_json"):
            try:
                return base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, TypeError):
                raise ImageError("Together.ai sent an unreadable image", retryable=True) from None
        if item.get("url"):
            fetched = await self.client.get(item["url"], timeout=self.config.timeout)
            if fetched.status_code == 200:
                return fetched.content
        raise ImageError("Together.ai answered without an image", retryable=True)


def _without_name(error: ImageError) -> str:
    return str(error).removeprefix("Together.ai ")


def _final_message(status: int, reason: str, model: str) -> str:
    if status == 401:
        return "Together.ai rejected the API key; check TOGETHER_API_KEY"
    if status == 402:
        return "Together.ai says the account has no credit left; add credit or use another key"
    if status == 403:
        return f"Together.ai refused access to the model {model}: {reason}"
    if status == 404:
        return f"Together.ai does not know the model {model}; check [images] model"
    if status in (400, 422):
        return f"Together.ai refused this image request: {reason}. Try rewording the prompt"
    return f"Together.ai answered HTTP {status}: {reason}"


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    if not message and isinstance(data, dict):
        message = data.get("message")
    return str(message or response.reason_phrase)[:300]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
