"""What the loopback fakes of HTTP services share: an aiohttp app on 127.0.0.1 that records
every request and checks it against the service's published contract (``FakeServer``, the
base of ``tests.fakes.together`` and ``tests.fakes.speech``),
an async-context shape for anything started and stopped (``Service``), OpenAI-style error
bodies, and the standalone mode (``serve_forever``)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from tests.fakes.contracts import ContractViolation, Schema

Colour = tuple[int, int, int]

CLIENT_CLOSED = 499  # recorded status when the client went away before the answer (nginx's code)
SHUTDOWN_TIMEOUT = 0.1  # seconds stop() waits for in-flight handlers before cancelling them


class Service:
    """``async with`` for anything with ``start()`` and ``stop()``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

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
    image_format: str | None = None  # FakeTogether: "PNG", "JPEG" or "WEBP"
    audio_seconds: float | None = None  # FakeSpeech: duration of the returned WAV
    violation: str | None = None  # how the request left the published contract, if it did


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


class FakeServer(Service):
    """An aiohttp app on 127.0.0.1 serving ``POST /v1{path}`` and recording each request.

    Every request is checked against the service's published contract (``tests/contracts/``,
    through :meth:`violates`): one that leaves it is answered 400 naming the field, recorded in
    ``violations``, and fails the test when the fake is closed (``async with``) unless the test
    took it back out of ``violations`` (a test of the fake's own refusals)."""

    path = ""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port  # the real port once started; a restart reuses it
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        raise NotImplementedError

    def add_routes(self, app: web.Application) -> None:
        """More routes than ``POST /v1{path}`` (a subclass's GET endpoints)."""

    def violates(
        self,
        schema: Schema,
        rec: RecordedRequest,
        refuse: Callable[[list[ContractViolation]], web.Response] | None = None,
    ) -> web.Response | None:
        """None if ``rec``'s body keeps to ``schema``; else the answer naming every field that
        does not (by default OpenAI's 400; ``refuse`` answers in the service's own shape). The
        request is recorded once in ``violations``, with all its problems."""
        found = schema.violations(rec.json)
        if not found:
            return None
        rec.violation = "; ".join(str(v) for v in found)
        self.violations.append(f"{rec.method} {rec.path}: {rec.violation}")
        if refuse is not None:
            return refuse(found)
        return error_response(400, rec.violation, "invalid_request_error", "invalid_request")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if exc_type is None and self.violations:
            raise AssertionError(
                f"requests to {type(self).__name__} left the published contract:\n"
                + "\n".join(self.violations)
            )

    def state(self) -> dict[str, Any]:
        return {
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "requests": [asdict(r) for r in self.requests],
            "violations": list(self.violations),
        }

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        app = web.Application()
        app.router.add_post("/v1" + self.path, self._handle)
        app.router.add_get("/_fake/state", self._state)
        self.add_routes(app)
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

    async def _handle(self, request: web.Request) -> web.StreamResponse:
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
