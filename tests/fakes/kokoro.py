"""Fake Kokoro-FastAPI: ``POST /dev/captioned_speech`` (outside /v1) and ``GET
/v1/audio/voices``, in the shapes of ``tests/contracts/kokoro.json`` (copied from the server's
source). Every request is checked against the contract (jsonschema) and refused with FastAPI's
422 when it does not fit; ``contract_errors`` keeps what was wrong.

The speech: each word is a 220 Hz tone (0.07 s a letter, at least 0.15 s) with 0.04 s between
words, 0.3 s of silence after a comma and 0.5 s after a full stop, so pauses can be found with
silencedetect. Words come back as a server normalises them: digits are spelled out one by one
("200" → "two", "zero", "zero"), punctuation is a token of its own. The WAV is 24 kHz 16-bit
mono and, like the real server's (written without seeking), carries 0xFFFFFFFF as its RIFF and
data sizes.

Run standalone: ``python -m tests.fakes.kokoro --port 0``; the first stdout line is the base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import re
import struct
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from tests.fakes.server import FakeServer, RecordedRequest, serve_forever

CONTRACT = json.loads(
    (Path(__file__).resolve().parents[1] / "contracts" / "kokoro.json").read_text("utf-8")
)
SAMPLE_RATE = 24000
VOICES = ("af_heart", "af_bella", "af_sky", "am_adam", "am_michael", "bf_emma", "bm_george",
          "ef_dora", "ff_siwis", "if_sara", "jf_alpha", "pf_dora", "zf_xiaobei")  # fmt: skip
OPENAI_NAMES = {"alloy": "am_adam", "echo": "af_bella", "onyx": "bm_george", "shimmer": "af_sky"}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TOKEN = re.compile(r"\d|[^\W\d_]+(?:['’][^\W\d_]+)*|[^\w\s]")


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = {**CONTRACT, "$ref": f"#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema)


REQUEST = _validator("CaptionedSpeechRequest")


class FakeKokoro(FakeServer):
    """Knobs: ``latency`` (seconds per request), ``down`` (503), ``timestamps`` (False: the
    answer carries ``timestamps: null``), ``voices``."""

    path = "/dev/captioned_speech"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        down: bool = False,
        timestamps: bool = True,
        voices: Sequence[str] = VOICES,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.latency = latency
        self.down = down
        self.timestamps = timestamps
        self.voices = list(voices)
        self.contract_errors: list[str] = []
        self.voice_listings = 0

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeKokoro is already started")
        app = web.Application()
        app.router.add_post(self.path, self._handle)  # outside /v1, as the real server
        app.router.add_get("/v1/audio/voices", self._list_voices)
        app.router.add_get("/_fake/state", self._state)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1,
                               access_log=None)  # fmt: skip
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _list_voices(self, request: web.Request) -> web.Response:
        self.voice_listings += 1
        if self.down:
            return _detail(503, "server_error", "Service unavailable", "server_error")
        if request.query.get("legacy") in ("true", "True", "1"):
            return web.json_response({"voices": self.voices})
        return web.json_response({"voices": [{"id": v, "name": v} for v in self.voices]})

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        body = rec.json
        problems = sorted(e.message for e in REQUEST.iter_errors(body))
        if problems:
            self.contract_errors.extend(problems)
            detail = [{"loc": ["body"], "msg": p, "type": "value_error"} for p in problems]
            return web.json_response({"detail": detail}, status=422)
        if self.down:
            return _detail(503, "server_error", "Service unavailable", "server_error")
        if body.get("stream", True) or body.get("response_format", "mp3") != "wav":
            # Not a limit of the real server: this fake only makes whole WAV answers.
            return _detail(400, "validation_error", "the fake answers stream: false, wav only",
                           "invalid_request_error")  # fmt: skip
        voice = OPENAI_NAMES.get(body.get("voice", "af_heart"), body.get("voice", "af_heart"))
        if voice not in self.voices:
            message = (
                f"Voice '{voice}' not found. Available voices: {', '.join(sorted(self.voices))}"
            )
            return _detail(400, "validation_error", message, "invalid_request_error")
        await asyncio.sleep(self.latency)
        words, samples = speak(body["input"], float(body.get("speed", 1.0)))
        rec.audio_seconds = len(samples) / SAMPLE_RATE
        answer = {
            "audio": base64.b64encode(streamed_wav(samples)).decode("ascii"),
            "audio_format": "audio/wav",
            "timestamps": words if self.timestamps and body.get("return_timestamps", True)
            else None,
        }  # fmt: skip
        return web.json_response(answer)


def speak(text: str, speed: float) -> tuple[list[dict[str, Any]], array[int]]:
    """Tones for the words, silences for the pauses; the word timestamps."""
    samples: array[int] = array("h")
    words: list[dict[str, Any]] = []

    def add(seconds: float, tone: bool) -> tuple[float, float]:
        start = len(samples) / SAMPLE_RATE
        count = round(seconds / speed * SAMPLE_RATE)
        if tone:
            base = len(samples)
            samples.extend(round(9000 * math.sin(2 * math.pi * 220 * (base + i) / SAMPLE_RATE))
                           for i in range(count))  # fmt: skip
        else:
            samples.extend([0] * count)
        return start, len(samples) / SAMPLE_RATE

    for token in _TOKEN.findall(text):
        if token.isdigit():
            token = DIGITS[int(token)]
        if token[0].isalnum():
            start, end = add(max(0.15, 0.07 * len(token)), tone=True)
            words.append({"word": token, "start_time": round(start, 3), "end_time": round(end, 3)})
            add(0.04, tone=False)
        else:  # punctuation: its own token, spanning the pause it makes
            pause = 0.5 if token in ".!?" else 0.3 if token in ",;:" else 0.0
            start, end = add(pause, tone=False)
            words.append({"word": token, "start_time": round(start, 3), "end_time": round(end, 3)})
    return words, samples


def streamed_wav(samples: array[int]) -> bytes:
    """A WAV as a writer that cannot seek back leaves it: sizes 0xFFFFFFFF."""
    fmt = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
    data = samples.tobytes()  # little-endian on every machine these tests run on
    return header + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + data


def _detail(status: int, error: str, message: str, kind: str) -> web.Response:
    return web.json_response({"detail": {"error": error, "message": message, "type": kind}},
                             status=status)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.kokoro", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args(argv)
    serve_forever(FakeKokoro(latency=args.latency, port=args.port))


if __name__ == "__main__":
    main()
