"""Fake OpenAI-compatible speech server (``POST /v1/audio/speech``), in one of two published
flavours:

- ``"kokoro"`` (the default): Kokoro-FastAPI v0.8 (tests/contracts/kokoro-fastapi.openapi.yaml):
  its models (kokoro, tts-1, tts-1-hd, gpt-4o-mini-tts), its voices (``GET /v1/audio/voices``;
  OpenAI's voice names are mapped to its own, ``af_bella+af_sky`` mixes), no ``instructions``;
- ``"openai"``: OpenAI (tests/contracts/openai-speech.openapi.yaml): its models and voices,
  ``instructions`` except for tts-1 / tts-1-hd, ``input`` at most 4096 characters.

Every request is checked against the flavour's contract, strictly (an unknown field or a value
outside an enum is a 400 naming the field, and fails the test). The answer is 16-bit PCM mono
24 kHz WAV of ``max(min_seconds, seconds_per_char * len(input) / speed)``, streamed in chunks
with 0xFFFFFFFF in the RIFF and data size fields as both services send it (``streamed=False``:
one body with true sizes). Only ``response_format: "wav"`` is served (what reelbot asks for).

Run standalone: ``python -m tests.fakes.speech --port 0 --latency 0.2``; the first stdout line
is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import web

from tests.fakes.audio import SAMPLE_RATE, make_wav, streamed_wav
from tests.fakes.contracts import request_schema
from tests.fakes.server import FakeServer, RecordedRequest, error_response, serve_forever

Flavour = Literal["kokoro", "openai"]
KOKORO = request_schema("kokoro-fastapi.openapi.yaml", "/v1/audio/speech")
# fable, onyx and nova are named in `voice`'s published description but missing from its enum.
OPENAI = request_schema("openai-speech.openapi.yaml", "/audio/speech",
                        also={"voice": ["fable", "onyx", "nova"]})  # fmt: skip
NO_INSTRUCTIONS = ("tts-1", "tts-1-hd")  # "Does not work with tts-1 or tts-1-hd."
# Kokoro-FastAPI's voices (api/src/voices/v1_0, a selection) and its OpenAI name mapping
# (api/src/core/openai_mappings.json).
KOKORO_VOICES = (
    "af_alloy", "af_bella", "af_heart", "af_nicole", "af_nova", "af_sarah", "af_sky", "am_adam",
    "am_echo", "am_michael", "am_onyx", "bf_emma", "bf_isabella", "bm_fable", "bm_george",
    "bm_lewis", "ef_dora", "ff_siwis", "jf_alpha", "zf_xiaobei",
)  # fmt: skip
KOKORO_OPENAI_NAMES = {
    "alloy": "am_adam", "ash": "af_nicole", "coral": "bf_emma", "echo": "af_bella",
    "fable": "af_sarah", "onyx": "bm_george", "nova": "bf_isabella", "sage": "am_michael",
    "shimmer": "af_sky",
}  # fmt: skip
_WEIGHT = re.compile(r"^(?P<name>[^()]+?)(?:\((?P<weight>\d+(?:\.\d+)?)\))?$")
CHUNK = 4096  # bytes per streamed chunk


class FakeSpeech(FakeServer):
    """Knobs (``latency``, ``latency_per_char``, ``seconds_per_char``, ``down``, ``streamed``,
    ...) can be changed while running."""

    path = "/audio/speech"

    def __init__(
        self,
        *,
        flavour: Flavour = "kokoro",
        latency: float = 0.0,
        latency_per_char: float = 0.0,
        seconds_per_char: float = 0.06,
        min_seconds: float = 0.5,
        down: bool = False,
        streamed: bool = True,
        expected_key: str | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.flavour: Flavour = flavour
        self.latency = latency
        self.latency_per_char = latency_per_char
        self.seconds_per_char = seconds_per_char
        self.min_seconds = min_seconds
        self.down = down
        self.streamed = streamed
        self.expected_key = expected_key

    def duration_for(self, text: str, speed: float = 1.0) -> float:
        """Seconds of audio the fake returns for ``text`` (before rounding to whole frames)."""
        return max(self.min_seconds, self.seconds_per_char * len(text) / speed)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/audio/voices", self._voices)

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        if self.down:
            return self._error(503, "Service unavailable")
        auth = request.headers.get("Authorization")
        if self.expected_key is not None and auth != f"Bearer {self.expected_key}":
            return self._error(401, "Invalid API key")
        refused = self.violates(KOKORO if self.flavour == "kokoro" else OPENAI, rec)
        if refused is not None:
            return refused
        body: dict[str, Any] = rec.json
        problem = self._refusal(body)
        if problem is not None:
            return self._error(400, problem)
        if body.get("response_format", "mp3") != "wav":
            asked = body.get("response_format", "mp3")
            return self._error(400, f"this fake serves only wav, not {asked!r}")
        text, speed = body["input"], float(body.get("speed", 1.0))
        await asyncio.sleep(self.latency + self.latency_per_char * len(text))
        seconds = self.duration_for(text, speed)
        rec.audio_seconds = round(seconds * SAMPLE_RATE) / SAMPLE_RATE
        if not self.streamed:
            return web.Response(body=make_wav(seconds), content_type="audio/wav")
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        wav = streamed_wav(seconds)
        for start in range(0, len(wav), CHUNK):
            await response.write(wav[start : start + CHUNK])
        await response.write_eof()
        return response

    def _refusal(self, body: dict[str, Any]) -> str | None:
        """What the real server refuses beyond its schema (as a 400), or None."""
        if self.flavour == "openai":
            if "instructions" in body and body["model"] in NO_INSTRUCTIONS:
                return f"instructions is not supported for {body['model']}"
            return None
        for part in re.split(r"[+-]", str(body.get("voice", "af_heart"))):
            match = _WEIGHT.match(part.strip())
            name = match["name"] if match else part
            name = KOKORO_OPENAI_NAMES.get(name, name)
            if name not in KOKORO_VOICES:
                return f"Voice '{name}' not found. Available voices: {', '.join(KOKORO_VOICES)}"
        return None

    def _error(self, status: int, message: str) -> web.Response:
        """An error in the flavour's own shape (Kokoro-FastAPI: FastAPI's ``detail``)."""
        if self.flavour == "openai":
            return error_response(status, message, "invalid_request_error")
        detail = {"error": "validation_error", "message": message, "type": "invalid_request_error"}
        return web.json_response({"detail": detail}, status=status)

    async def _voices(self, request: web.Request) -> web.Response:
        if self.flavour != "kokoro":
            return web.Response(status=404, text="Not Found")
        if request.query.get("legacy") == "true":
            return web.json_response({"voices": list(KOKORO_VOICES)})
        return web.json_response({"voices": [{"id": v, "name": v} for v in KOKORO_VOICES]})


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.speech", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--flavour", choices=["kokoro", "openai"], default="kokoro")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--latency-per-char", type=float, default=0.0)
    p.add_argument("--seconds-per-char", type=float, default=0.06)
    p.add_argument("--min-seconds", type=float, default=0.5)
    p.add_argument("--down", action="store_true")
    p.add_argument("--expected-key")
    args = p.parse_args(argv)
    serve_forever(
        FakeSpeech(
            flavour=args.flavour,
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
