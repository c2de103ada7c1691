"""Fake OpenAI-compatible speech server (``POST /v1/audio/speech``), in one of two published
flavours:

- ``"kokoro"`` (the default): Kokoro-FastAPI v0.8 (tests/contracts/kokoro-fastapi.openapi.yaml),
  the whole server reelbot talks to: its models (kokoro, tts-1, tts-1-hd, gpt-4o-mini-tts), its
  voices (``GET /v1/audio/voices``, the ``voices`` knob; OpenAI's voice names are mapped to its
  own, ``af_bella+af_sky`` mixes), no ``instructions``; and its word-timed speech outside /v1,
  ``POST /dev/captioned_speech`` (what `[tts] provider = "kokoro"` asks);
- ``"openai"``: OpenAI (tests/contracts/openai-speech.openapi.yaml): its models and voices,
  ``instructions`` except for tts-1 / tts-1-hd, ``input`` at most 4096 characters.

Every request is checked against the flavour's contract with ``tests/fakes/contracts.py``,
strictly: an unknown field or a value outside an enum is refused naming the field (a 400; on
``/dev/captioned_speech`` FastAPI's own 422, listing every field), and fails the test. The
speech answer is 16-bit PCM mono 24 kHz WAV of ``max(min_seconds, seconds_per_char *
len(input) / speed)``, streamed in chunks with 0xFFFFFFFF in the RIFF and data size fields as
both services send it (``streamed=False``: one body with true sizes). The captioned answer is
JSON: each word spoken as a tone, with when it is said (``tests.fakes.audio.speak``; the
``timestamps`` knob off: ``timestamps: null``), the WAV in base 64. Only ``response_format:
"wav"`` is served (what reelbot asks for).

Run standalone: ``python -m tests.fakes.speech --port 0 --latency 0.2``; the first stdout line
is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import web

from tests.fakes.audio import SAMPLE_RATE, as_streamed, make_wav, pcm_wav, speak, streamed_wav
from tests.fakes.contracts import ContractViolation, request_schema
from tests.fakes.server import FakeServer, RecordedRequest, error_response, serve_forever

Flavour = Literal["kokoro", "openai"]
KOKORO = request_schema("kokoro-fastapi.openapi.yaml", "/v1/audio/speech")
CAPTIONED = request_schema("kokoro-fastapi.openapi.yaml", "/dev/captioned_speech")
CAPTIONED_PATH = "/dev/captioned_speech"  # outside /v1, as the real server serves it
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
    ``timestamps``, ``voices``, ...) can be changed while running. ``voice_listings`` counts
    ``GET /v1/audio/voices``."""

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
        timestamps: bool = True,
        voices: Sequence[str] = KOKORO_VOICES,
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
        self.timestamps = timestamps
        self.voices = list(voices)  # the Kokoro flavour's
        self.expected_key = expected_key
        self.voice_listings = 0

    def duration_for(self, text: str, speed: float = 1.0) -> float:
        """Seconds of audio the fake returns for ``text`` (before rounding to whole frames)."""
        return max(self.min_seconds, self.seconds_per_char * len(text) / speed)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/audio/voices", self._voices)
        app.router.add_post(CAPTIONED_PATH, self._handle)

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        if rec.path == CAPTIONED_PATH:
            return await self._captioned(rec)
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
            if name not in self.voices:
                return f"Voice '{name}' not found. Available voices: {', '.join(self.voices)}"
        return None

    async def _captioned(self, rec: RecordedRequest) -> web.Response:
        """Kokoro-FastAPI's ``POST /dev/captioned_speech``: one JSON answer (``stream`` false)
        with the audio in base 64 and when each word is said."""
        if self.flavour != "kokoro":
            return web.Response(status=404, text="Not Found")
        refused = self.violates(CAPTIONED, rec, refuse=_unprocessable)
        if refused is not None:
            return refused
        if self.down:
            return self._error(503, "Service unavailable")
        body: dict[str, Any] = rec.json
        if body.get("stream", True) or body.get("response_format", "mp3") != "wav":
            # Not a limit of the real server: this fake only makes whole WAV answers.
            return self._error(400, "the fake answers stream: false, wav only")
        problem = self._refusal(body)
        if problem is not None:
            return self._error(400, problem)
        await asyncio.sleep(self.latency)
        words, samples = speak(body["input"], float(body.get("speed", 1.0)))
        rec.audio_seconds = len(samples) / SAMPLE_RATE
        wanted = self.timestamps and body.get("return_timestamps", True)
        return web.json_response({
            "audio": base64.b64encode(as_streamed(pcm_wav(samples))).decode("ascii"),
            "audio_format": "audio/wav",
            "timestamps": words if wanted else None,
        })  # fmt: skip

    def _error(self, status: int, message: str) -> web.Response:
        """An error in the flavour's own shape (Kokoro-FastAPI: FastAPI's ``detail``)."""
        if self.flavour == "openai":
            return error_response(status, message, "invalid_request_error")
        detail = {"error": "validation_error", "message": message, "type": "invalid_request_error"}
        return web.json_response({"detail": detail}, status=status)

    async def _voices(self, request: web.Request) -> web.Response:
        if self.flavour != "kokoro":
            return web.Response(status=404, text="Not Found")
        self.voice_listings += 1
        if self.down:
            return self._error(503, "Service unavailable")
        if request.query.get("legacy") in ("true", "True", "1"):
            return web.json_response({"voices": list(self.voices)})
        return web.json_response({"voices": [{"id": v, "name": v} for v in self.voices]})


def _unprocessable(violations: list[ContractViolation]) -> web.Response:
    """FastAPI's answer to a body its pydantic model refuses: 422, every field listed."""
    detail = [{"loc": v.field.split("."), "msg": v.problem, "type": "value_error"}
              for v in violations]  # fmt: skip
    return web.json_response({"detail": detail}, status=422)


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
