"""Fake Together.ai image API (``POST /v1/images/generations``) on 127.0.0.1.

Also holds the small ``FakeServer`` base shared with ``tests.fakes.speech``.
Run standalone: ``python -m tests.fakes.together --port 0 --latency 0.3``; the first stdout
line is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from PIL import Image

Colour = tuple[int, int, int]
Fault = int | str  # an HTTP status, or "hang"

CLIENT_CLOSED = 499  # recorded status when the client went away before the answer (nginx's code)
SHUTDOWN_TIMEOUT = 0.1  # seconds stop() waits for in-flight handlers before cancelling them

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


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    t_start: float  # time.monotonic() when the request arrived
    concurrent: int  # requests in flight at arrival, this one included
    json: Any = None  # parsed body, or None if it was not JSON
    t_end: float | None = None
    status: int | None = None
    colour: Colour | None = None  # FakeTogether: colour of the returned image
    audio_seconds: float | None = None  # FakeSpeech: duration of the returned WAV


def error_response(
    status: int, message: str, type_: str, code: str | None = None, **headers: str
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def closed_base_url() -> str:
    """A /v1 base URL on 127.0.0.1 where (almost certainly) nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class FakeServer:
    """An aiohttp app on 127.0.0.1 serving ``POST /v1{path}`` and recording each request."""

    path = ""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port  # the real port once started; a restart reuses it
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "requests": [asdict(r) for r in self.requests],
        }

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        app = web.Application()
        app.router.add_post("/v1" + self.path, self._handle)
        app.router.add_get("/_fake/state", self._state)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT, access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            t_start=time.monotonic(),
            concurrent=self.in_flight,
        )
        self.requests.append(rec)
        try:
            try:
                rec.json = json.loads(await request.read())
            except ValueError:
                rec.json = None
            response = await self.respond(request, rec)
            rec.status = response.status
            return response
        except asyncio.CancelledError:  # client disconnected (handler_cancellation=True)
            rec.status = CLIENT_CLOSED
            raise
        finally:
            rec.t_end = time.monotonic()
            self.in_flight -= 1

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())


def serve_forever(fake: FakeServer) -> None:
    """CLI mode: start ``fake``, print its base URL as the first stdout line, serve until killed."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with fake:
            print(fake.base_url, flush=True)
            await stop.wait()

    asyncio.run(main())


# --- Together --------------------------------------------------------------------------------

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
        self.overlaps = 0  # requests that arrived while another was in flight (answered 429)
        self.successes = 0

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
        if isinstance(fault, str) and fault != "hang":
            raise ValueError(f"unknown fault {fault!r}: use an HTTP status or 'hang'")
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

    async def _generate(self, rec: RecordedRequest) -> web.Response:
        try:
            model, width, height, n = parse_image_request(rec.json)
        except BadRequest as exc:
            return error_response(400, str(exc), "invalid_request_error")
        await asyncio.sleep(self.latency)
        colour = self.palette[self.successes % len(self.palette)]
        self.successes += 1
        rec.colour = colour
        b64 = base64.b64encode(solid_png(width, height, colour)).decode("ascii")
        timings = {"inference": self.latency}
        data = [{"index": i, "b64_json": b64, "timings": timings} for i in range(n)]
        return web.json_response(
            {"id": f"fake-{self.successes:06d}", "model": model, "object": "list", "data": data}
        )


def _fault_arg(text: str) -> Fault:
    return text if text == "hang" else int(text)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.together", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--expected-key")
    p.add_argument("--script", default="", help="comma-separated statuses or 'hang'")
    p.add_argument("--retry-after", type=float)
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--fault-kinds", default="429,500,502,503")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang-seconds", type=float, default=60.0)
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
        port=args.port,
    )
    serve_forever(fake)


if __name__ == "__main__":
    main()
