"""Fake OpenAI-compatible speech server (``POST /v1/audio/speech``), as served by
Kokoro-FastAPI / openedai-speech / LocalAI. Answers 16-bit PCM mono 24 kHz WAV whose duration is
``max(min_seconds, seconds_per_char * len(input) / speed)``.

Run standalone: ``python -m tests.fakes.speech --port 0 --latency 0.2``; the first stdout line
is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tests.fakes.audio import SAMPLE_RATE, make_wav
from tests.fakes.server import FakeServer, RecordedRequest, error_response, serve_forever


class FakeSpeech(FakeServer):
    """Knobs (``latency``, ``latency_per_char``, ``seconds_per_char``, ``down``, ...) can be
    changed while running."""

    path = "/audio/speech"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        latency_per_char: float = 0.0,
        seconds_per_char: float = 0.06,
        min_seconds: float = 0.5,
        down: bool = False,
        expected_key: str | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.latency = latency
        self.latency_per_char = latency_per_char
        self.seconds_per_char = seconds_per_char
        self.min_seconds = min_seconds
        self.down = down
        self.expected_key = expected_key

    def duration_for(self, text: str, speed: float = 1.0) -> float:
        """Seconds of audio the fake returns for ``text`` (before rounding to whole frames)."""
        return max(self.min_seconds, self.seconds_per_char * len(text) / speed)

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        if self.down:
            return error_response(503, "Service unavailable", "server_error")
        auth = request.headers.get("Authorization")
        if self.expected_key is not None and auth != f"Bearer {self.expected_key}":
            return error_response(401, "Invalid API key", "invalid_request_error")
        try:
            text, speed = parse_speech_request(rec.json)
        except ValueError as exc:
            return error_response(400, str(exc), "invalid_request_error")
        await asyncio.sleep(self.latency + self.latency_per_char * len(text))
        seconds = self.duration_for(text, speed)
        wav = make_wav(seconds, sample_rate=SAMPLE_RATE)
        rec.audio_seconds = round(seconds * SAMPLE_RATE) / SAMPLE_RATE
        return web.Response(body=wav, content_type="audio/wav")


def parse_speech_request(body: Any) -> tuple[str, float]:
    """Validate an OpenAI speech request; return (input, speed) or raise ValueError."""
    if not isinstance(body, dict):
        raise ValueError("Request body must be a JSON object")
    for name in ("model", "input", "voice"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise ValueError(f"'{name}' is required")
    if body.get("response_format") != "wav":
        raise ValueError(f"unsupported response_format {body.get('response_format')!r}")
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise ValueError("'speed' must be a number between 0.25 and 4.0")
    return body["input"], float(speed)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.speech", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--latency-per-char", type=float, default=0.0)
    p.add_argument("--seconds-per-char", type=float, default=0.06)
    p.add_argument("--min-seconds", type=float, default=0.5)
    p.add_argument("--down", action="store_true")
    p.add_argument("--expected-key")
    args = p.parse_args(argv)
    serve_forever(
        FakeSpeech(
            latency=args.latency,
            latency_per_char=args.latency_per_char,
            seconds_per_char=args.seconds_per_char,
            min_seconds=args.min_seconds,
            down=args.down,
            expected_key=args.expected_key,
            port=args.port,
        )
    )


if __name__ == "__main__":
    main()
