"""Fake Together.ai image API (``POST /v1/images/generations``) on 127.0.0.1.

Run standalone: ``python -m tests.fakes.together --port 0 --latency 0.3``; the first stdout
line is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import random
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.server import (
    Colour,
    FakeServer,
    RecordedRequest,
    error_response,
    serve_forever,
)

Fault = int | str  # an HTTP status, "hang", or one of BAD_ANSWERS
# Answers with status 200 that are not a usable image (each a name for `script_of_statuses`):
BAD_ANSWERS = (
    "not-an-image",  # b64_json of bytes that are no picture
    "tiny",  # a 1x1 PNG
    "html",  # an HTML page (a proxy's or a captive portal's), not JSON
    "oversize",  # a PNG wider than 4096 px
    "heavy",  # a PNG of noise at the requested size: megabytes
)

PALETTE: tuple[Colour, ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 128, 0),
    (128, 0, 255),
)


_FAULTS: dict[int, tuple[str, str, str | None]] = {
    400: (
        "Prompt flagged by content policy: the input may violate our usage policies.",
        "invalid_request_error",
        "content_policy_violation",
    ),
    401: ("Invalid API key provided", "invalid_request_error", "invalid_api_key"),
    402: (
        "Credit limit exceeded: payment required. Add credits at "
        "https://api.together.ai/settings/billing to continue.",
        "credit_limit",
        None,
    ),
    403: ("You do not have access to this model.", "invalid_request_error", "forbidden"),
    429: (
        "You have reached the rate limit specific to this model. The free tier allows "
        "1 concurrent request; please retry later.",
        "rate_limit_exceeded",
        "rate_limit_exceeded",
    ),
    500: ("Internal server error", "server_error", None),
    502: ("Bad gateway", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}
DEFAULT_FAULT_KINDS: tuple[Fault, ...] = (429, 500, 502, 503)


def solid_png(width: int, height: int, colour: Colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """A picture that does not compress: about 3 bytes a pixel."""
    buf = io.BytesIO()
    noise = random.Random(seed).randbytes(width * height * 3)
    Image.frombytes("RGB", (width, height), noise).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class BadRequest(Exception):
    pass


def _int_field(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    if type(value) is not int or not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be an integer between {lo} and {hi}")
    return value


def parse_image_request(body: Any) -> tuple[str, int, int, int]:
    """Validate a generation request; return (model, width, height, n) or raise BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    for name in ("model", "prompt"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise BadRequest(f"'{name}' is required")
    if body.get("response_format") != "b64_json":
        raise BadRequest("this fake only serves response_format 'b64_json'")
    _int_field(body, "steps", 4, 1, 100)
    width = _int_field(body, "width", 1024, 64, 2048)
    height = _int_field(body, "height", 1024, 64, 2048)
    return body["model"], width, height, _int_field(body, "n", 1, 1, 4)


class FakeTogether(FakeServer):
    """Together.ai ``/v1/images/generations`` with a one-request-at-a-time free tier.

    Knobs can be changed while running; ``script_of_statuses`` is consumed (popped) in order.
    """

    path = "/images/generations"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        expected_key: str | None = None,
        script_of_statuses: Sequence[Fault] = (),
        retry_after: float | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[Fault] = DEFAULT_FAULT_KINDS,
        seed: int = 0,
        hang_seconds: float = 60.0,
        palette: Sequence[Colour] = PALETTE,
        generates_after_hangup: bool = False,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.latency = latency
        self.expected_key = expected_key
        self.script_of_statuses: list[Fault] = list(script_of_statuses)
        self.retry_after = retry_after
        self.fault_rate = fault_rate
        self.fault_kinds: list[Fault] = list(fault_kinds)
        self.rng = random.Random(seed)
        self.hang_seconds = hang_seconds
        self.palette: list[Colour] = list(palette)
        # True: like Together.ai, an image is generated to its end, and counted against the
        # concurrency limit, even when the client hangs up before the answer. False: hanging
        # up stops it (the default, for tests whose tiny client timeouts race a busy machine).
        self.generates_after_hangup = generates_after_hangup
        self.overlaps = 0  # requests that arrived while another was in flight (answered 429)
        self.successes = 0  # images generated (whether or not the client stayed for them)
        self._orphans: set[asyncio.Task[web.Response]] = set()  # generating, client gone

    @property
    def colours(self) -> list[Colour]:
        """Colours of the images returned so far, in order."""
        return [r.colour for r in self.requests if r.colour is not None]

    def state(self) -> dict[str, Any]:
        return {**super().state(), "overlaps": self.overlaps, "colours": self.colours}

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        if rec.concurrent > 1:
            self.overlaps += 1
            return self._fault_response(429)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (
            self.expected_key is not None and auth != f"Bearer {self.expected_key}"
        ):
            return self._fault_response(401)
        fault = self._next_fault()
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)
            return error_response(504, "Upstream request timed out", "server_error")
        if fault in BAD_ANSWERS:
            return self._bad_answer(str(fault), rec)
        if isinstance(fault, str) and fault != "hang":
            raise ValueError(f"unknown fault {fault!r}: use an HTTP status, 'hang' or a bad answer")
        if isinstance(fault, int) and fault != 200:
            return self._fault_response(fault)
        return await self._generate(rec)

    def _next_fault(self) -> Fault | None:
        if self.script_of_statuses:
            return self.script_of_statuses.pop(0)
        if self.fault_kinds and self.rng.random() < self.fault_rate:
            return self.rng.choice(self.fault_kinds)
        return None

    def _fault_response(self, status: int) -> web.Response:
        message, type_, code = _FAULTS.get(status, (f"Fake error {status}", "server_error", None))
        headers: dict[str, str] = {}
        if status == 429:
            headers["Via"] = "1.1 fake"
            if self.retry_after is not None:
                ra = self.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        return error_response(status, message, type_, code, **headers)

    async def stop(self) -> None:
        for orphan in list(self._orphans):
            orphan.cancel()
        await super().stop()

    async def _generate(self, rec: RecordedRequest) -> web.Response:
        try:
            model, width, height, n = parse_image_request(rec.json)
        except BadRequest as exc:
            return error_response(400, str(exc), "invalid_request_error")
        if not self.generates_after_hangup:
            return await self._draw(rec, model, width, height, n)
        work = asyncio.ensure_future(self._draw(rec, model, width, height, n))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:  # the client hung up: the generation goes on
            self.in_flight += 1  # the request's handler takes one off as it ends
            self._orphans.add(work)
            work.add_done_callback(self._orphan_done)
            raise

    def _orphan_done(self, work: asyncio.Task[web.Response]) -> None:
        self._orphans.discard(work)
        self.in_flight -= 1

    async def _draw(
        self, rec: RecordedRequest, model: str, width: int, height: int, n: int
    ) -> web.Response:
        await asyncio.sleep(self.latency)
        colour = self.palette[self.successes % len(self.palette)]
        self.successes += 1
        rec.colour = colour
        return self._image_answer(model, solid_png(width, height, colour), n)

    def _image_answer(self, model: str, image: bytes, n: int = 1) -> web.Response:
        b64 = base64.b64encode(image).decode("ascii")
        timings = {"inference": self.latency}
        data = [{"index": i, "b64_json": b64, "timings": timings} for i in range(n)]
        return web.json_response(
            {"id": f"fake-{len(self.requests):06d}", "model": model, "object": "list",
             "data": data}
        )  # fmt: skip

    def _bad_answer(self, kind: str, rec: RecordedRequest) -> web.Response:
        """A 200 that is not a usable image (see BAD_ANSWERS)."""
        body = rec.json if isinstance(rec.json, dict) else {}
        model = str(body.get("model", ""))
        width, height = body.get("width", 1024), body.get("height", 1024)
        if kind == "html":
            page = "<!DOCTYPE html><html><body><h1>Welcome!</h1>Sign in to continue.</body></html>"
            return web.Response(text=page, content_type="text/html")
        if kind == "not-an-image":
            return self._image_answer(model, b"this is not a picture\n" * 20)
        if kind == "tiny":
            return self._image_answer(model, solid_png(1, 1, (0, 0, 0)))
        if kind == "oversize":
            return self._image_answer(model, solid_png(4160, 64, (0, 0, 0)))
        return self._image_answer(model, noise_png(width, height))  # heavy


def _fault_arg(text: str) -> Fault:
    return text if text == "hang" else int(text)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.together", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--expected-key")
    p.add_argument("--script", default="", help="comma-separated statuses, 'hang', 'tiny', ...")
    p.add_argument("--retry-after", type=float)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--fault-kinds", default="429,500,502,503")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang-seconds", type=float, default=60.0)
    p.add_argument("--generates-after-hangup", action="store_true")
    args = p.parse_args(argv)
    fake = FakeTogether(
        latency=args.latency,
        expected_key=args.expected_key,
        script_of_statuses=[_fault_arg(s) for s in args.script.split(",") if s],
        retry_after=args.retry_after,
        fault_rate=args.fault_rate,
        fault_kinds=[_fault_arg(s) for s in args.fault_kinds.split(",") if s],
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        generates_after_hangup=args.generates_after_hangup,
        port=args.port,
    )
    serve_forever(fake)


if __name__ == "__main__":
    main()
