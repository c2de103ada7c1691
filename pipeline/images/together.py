"""Together.ai FLUX: one request per image (`POST {base_url}/images/generations`).

What is sent is Together's published request (tests/contracts/together.openapi.yaml):
`response_format: "base64"`, `output_format: "png"`, `negative_prompt` as its own field, `steps`
only when known for the model. The answer is taken for what its bytes are (PNG, JPEG or WebP),
whatever was asked.

Retries:
- 429: waited out for as long as the service says: `Retry-After` (seconds or an HTTP date), else
  `x-ratelimit-reset` (seconds to wait; a value of 10^9 or more is a Unix time to wait for), else
  capped exponential backoff. Budgeted by time: `[images] rate_limit_wait` seconds per image.
- 5xx (503: out of capacity), timeouts, unreachable host, an answer that is not an image:
  `[images] max_attempts` attempts, with capped exponential backoff.
- Anything else is final, in its own words (404 model, 422 safety checker, other 400s with
  Together's own message). A 401 (not a valid key) or 402 (no credit left) is `KeyRefused`,
  naming the key's variable: the image slot takes that key out and tries another.
Every wait is told to the caller (`on_wait`), so front ends can show it.

An answer that is a URL is fetched only over http(s), with the same timeout, retries and size
cap as the API call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import logging
import random
import time
from pathlib import Path
from typing import Any

import httpx

from ..artifact_checks import check_image
from ..config import ImagesConfig, LimitsConfig
from ..errors import ImageError, KeyRefused
from ..image_slot import ImageKey, wait_before_retry
from .base import ImageRequest, WaitSink

__all__ = ["MAX_ANSWER_BYTES", "TogetherImages", "rate_limit_wait"]

log = logging.getLogger(__name__)

# Largest answer read, JSON or image (a 25 MB picture is about 34 MB in base64).
MAX_ANSWER_BYTES = 48 * 1024 * 1024
UNIX_TIME = 1_000_000_000  # an x-ratelimit-reset this large is a moment, not a duration
MIN_WAIT = 0.05  # a "wait 0 s" still waits a little, so a busy service is not hammered


class _Retry(Exception):
    """One attempt failed in a way another attempt may mend."""

    def __init__(self, problem: str, *, wait: float | None = None, limited: bool = False) -> None:
        self.problem = problem
        self.wait = wait  # what the service asked for, if it did
        self.limited = limited  # a 429: budgeted by time, not counted as an attempt
        super().__init__(problem)


class TogetherImages:
    name = "together"
    checks_pictures = True  # every answer passes `check_image` before it is written

    def __init__(
        self,
        config: ImagesConfig,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        key_variable: str = "TOGETHER_API_KEY",
        rng: random.Random | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or LimitsConfig()
        self.client = client
        self._key = ImageKey(key_variable, api_key)  # unless a request brings its own
        self._rng = rng or random.Random()

    async def generate(
        self,
        request: ImageRequest,
        out: Path,
        *,
        on_wait: WaitSink | None = None,
        key: ImageKey | None = None,
    ) -> None:
        """Make one image with `key` (the image slot's; else the key this was built with)."""
        if key is None or not key.secret:
            key = self._key
        headers = {"Authorization": f"Bearer {key.secret}"}
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": request.width,
            "height": request.height,
            "n": 1,
            "seed": request.seed,
            "response_format": "base64",
            "output_format": "png",
        }
        if request.steps is not None:
            body["steps"] = request.steps
        url = f"{self.config.base_url.rstrip('/')}/images/generations"
        attempts = self.config.max_attempts
        failures = 0  # attempts that failed other than by a 429
        waited = 0.0  # seconds spent waiting out 429s
        while True:
            try:
                data = await self._attempt(url, body, request, headers, key)
            except _Retry as retry:
                if retry.limited:
                    delay = self._rate_limit_delay(retry.wait, failures + 1)
                    if waited + delay > self.config.rate_limit_wait:
                        raise ImageError(
                            f"Together.ai kept rate-limiting scene {request.scene}'s image "
                            f"(HTTP 429) past the {self.config.rate_limit_wait:.0f} s "
                            "[images] rate_limit_wait allows; try again later",
                            retryable=True,
                        ) from None
                    waited += delay
                    reason = f"waiting for Together's rate limit ({_seconds(delay)})"
                else:
                    failures += 1
                    if failures >= attempts:
                        raise ImageError(
                            f"Together.ai {retry.problem}; gave up after {attempts} attempts. "
                            "Try again in a few minutes.",
                            retryable=True,
                        ) from None
                    delay = self._backoff(failures)
                    reason = f"Together.ai {retry.problem}; trying again in {_seconds(delay)}"
                log.info("scene %d: %s", request.scene, reason)
                if on_wait is not None:
                    on_wait(delay, reason)
                await wait_before_retry(delay)  # no retry for a render that is gone
                continue
            out.write_bytes(data)
            return

    async def _attempt(
        self,
        url: str,
        body: dict[str, Any],
        request: ImageRequest,
        auth: dict[str, str],
        key: ImageKey,
    ) -> bytes:
        """One request; the image's bytes, or _Retry, or a final ImageError."""
        status, headers, content = await self._exchange("POST", url, json=body, headers=auth)
        if status == 200:
            return await self._image(content)
        reason = _error_message(content, status)
        if status == 429:
            raise _Retry("is rate-limiting requests (HTTP 429)", limited=True,
                         wait=rate_limit_wait(headers))  # fmt: skip
        if status == 503:
            raise _Retry("is out of capacity (HTTP 503)")
        if status >= 500:
            raise _Retry(f"had a server error (HTTP {status})")
        if status in (401, 402):
            raise KeyRefused(_refusal(status, key.name), variable=key.name, status=status)
        raise ImageError(_final_message(status, reason, request))

    async def _exchange(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, httpx.Headers, bytes]:
        """One HTTP exchange, each of its steps (connect, send, every read) within
        `[images] timeout`, its body read up to MAX_ANSWER_BYTES."""
        timeout = self.config.timeout
        try:
            async with self.client.stream(method, url, timeout=timeout,
                                          **kwargs) as response:  # fmt: skip
                content = await _read_capped(response)
                return response.status_code, response.headers, content
        except httpx.TimeoutException:
            raise _Retry(f"did not answer within {_seconds(timeout)}") from None
        except httpx.TransportError as exc:
            raise _Retry(f"could not be reached ({type(exc).__name__})") from None

    async def _image(self, content: bytes) -> bytes:
        """The picture in a 200 answer: decoded from base64, or fetched from its URL."""
        try:
            item = _first_item(content)
        except ValueError as exc:
            raise _Retry(f"answered without an image ({exc})") from None
        if isinstance(item.get("b64_json"), str):
            try:
                data = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise _Retry("sent an image that is not valid base64") from None
        elif isinstance(item.get("url"), str):
            data = await self._fetch(item["url"])
        else:
            raise _Retry("answered without an image")
        try:  # a bad answer (not a picture, 1x1 px, oversize) is a server fault: retried
            return await asyncio.to_thread(check_image, data, self.limits)
        except ImageError as bad:
            if not bad.retryable:
                raise
            raise _Retry(f"sent an unusable answer ({_without_name(bad)})") from None

    async def _fetch(self, url: str) -> bytes:
        """GET an image URL from an answer: http(s) only, within the timeout and size cap,
        retried like the API call itself."""
        try:
            scheme = httpx.URL(url).scheme
        except httpx.InvalidURL:
            scheme = ""
        if scheme not in ("http", "https"):
            shown = url[:80]
            raise ImageError(
                f"Together.ai answered with an image address reelbot will not fetch ({shown}): "
                "only http and https are used. Try again later",
                retryable=True,
            )
        host = httpx.URL(url).host
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                status, _, content = await self._exchange("GET", url)
            except _Retry as retry:
                problem = retry.problem
            else:
                if status == 200:
                    return content
                problem = f"answered HTTP {status}"
            if attempt == self.config.max_attempts:
                break
            await wait_before_retry(self._backoff(attempt))
        raise ImageError(
            f"the image Together.ai made could not be fetched from {host}: it {problem}; "
            f"gave up after {self.config.max_attempts} attempts. Try again in a few minutes",
            retryable=True,
        )

    def _rate_limit_delay(self, asked: float | None, attempt: int) -> float:
        if asked is None:
            return self._backoff(attempt)
        return max(MIN_WAIT, asked)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self._rng.random() / 2)


async def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise _Retry(f"sent an answer of {int(declared):,} bytes, over the {_cap()} cap")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _Retry(f"sent an answer over the {_cap()} cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _cap() -> str:
    return f"{MAX_ANSWER_BYTES // (1024 * 1024)} MB"


def _first_item(content: bytes) -> dict[str, Any]:
    try:
        data = httpx.Response(200, content=content).json()
    except ValueError:
        raise ValueError("the answer is not JSON") from None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise ValueError("no data item")
    return items[0]


def rate_limit_wait(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds a 429 asks to wait: `Retry-After` (seconds or an HTTP date), else
    `x-ratelimit-reset` (seconds, or a Unix time when it is 10^9 or more); None if neither."""
    now = time.time() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - now)
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
            return None
        return max(0.0, value - now if value >= UNIX_TIME else value)
    return None


def _without_name(error: ImageError) -> str:
    return str(error).removeprefix("Together.ai ")


def _final_message(status: int, reason: str, request: ImageRequest) -> str:
    model, scene = request.model, request.scene
    if status == 403:
        return f"Together.ai refused access to the model {model}: {reason}"
    if status == 404:
        return (
            f"Together.ai does not offer the model {model} (HTTP 404); set [images] model to "
            "one it offers (`reelbot doctor --online` checks it)"
        )
    if status == 422:
        return (
            f"Together.ai's safety checker refused scene {scene}'s image; reword that scene's "
            "image prompt"
        )
    if status == 400:
        return f"Together.ai refused the request (HTTP 400): {reason}"
    return f"Together.ai answered HTTP {status}: {reason}"


def _refusal(status: int, variable: str) -> str:
    """A refused key, by its variable's name (never the key)."""
    if status == 401:
        return f"Together.ai rejected the API key in {variable} (HTTP 401); check {variable}"
    return (f"Together.ai says the account of the key in {variable} has no credit left "
            "(HTTP 402); add credit or use another key")  # fmt: skip


def _error_message(content: bytes, status: int) -> str:
    try:
        data = httpx.Response(status, content=content).json()
    except ValueError:
        text = content[:300].decode("utf-8", "replace").strip()
        return text or f"HTTP {status}"
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    if not message and isinstance(data, dict):
        message = data.get("message")
    return str(message or f"HTTP {status}")[:300]


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
