"""Fake Together.ai image API on 127.0.0.1: ``POST /v1/images/generations`` and
``GET /v1/models``, as published (tests/contracts/together.openapi.yaml).

Every generation request is checked against the published schema, strictly (an unknown field or
a value outside an enum is a 400 naming the field, and fails the test). Answers take the
published shapes: each data item carries ``type``; the image is JPEG unless
``output_format: "png"`` is asked for; ``response_format: "url"`` answers a URL this fake serves
(or, for tests of the client, whatever ``image_url`` says). A model that ``GET /v1/models``
does not list as an image model is a 404, like the real service.

Run standalone: ``python -m tests.fakes.together --port 0 --latency 0.3``; the first stdout
line is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from aiohttp import web
from PIL import Image

from tests.fakes.contracts import request_schema
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
ImageFormat = Literal["PNG", "JPEG", "WEBP"]
CONTRACT = "together.openapi.yaml"
GENERATION = request_schema(CONTRACT, "/images/generations")

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

# What GET /v1/models answers by default: the image models of Together's docs (the free
# "FLUX.1-schnell-Free" is no longer offered), and a chat model.
DEFAULT_MODELS: tuple[dict[str, Any], ...] = (
    {"id": "black-forest-labs/FLUX.1-schnell", "object": "model", "created": 1722470400,
     "type": "image", "display_name": "FLUX.1 [schnell]", "organization": "Black Forest Labs"},
    {"id": "black-forest-labs/FLUX.1.1-pro", "object": "model", "created": 1728000000,
     "type": "image", "display_name": "FLUX1.1 [pro]", "organization": "Black Forest Labs"},
    {"id": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "object": "model", "created": 1733443200,
     "type": "chat", "display_name": "Llama 3.3 70B Instruct Turbo", "organization": "Meta"},
)  # fmt: skip

_FAULTS: dict[int, tuple[str, str, str | None]] = {
    400: (
        "Input validation error: `prompt` must have less than 2048 tokens.",
        "invalid_request_error",
        "invalid_request",
    ),
    401: ("Invalid API key provided", "invalid_request_error", "invalid_api_key"),
    402: (
        "Credit limit exceeded: payment required. Add credits at "
        "https://api.together.ai/settings/billing to continue.",
        "credit_limit",
        None,
    ),
    403: ("You do not have access to this model.", "invalid_request_error", "forbidden"),
    422: (
        "The prompt or the generated image was flagged by the safety checker as NSFW.",
        "invalid_request_error",
        "nsfw_content",
    ),
    429: (
        "You are being rate limited: the dynamic rate limit of this model was reached. "
        "Please retry after the time given in x-ratelimit-reset.",
        "rate_limit_exceeded",
        "dynamic_request_limited",
    ),
    500: ("Internal server error", "server_error", None),
    502: ("Bad gateway", "server_error", None),
    503: (
        "The model is out of capacity right now; please try again later.",
        "server_error",
        "service_unavailable",
    ),
}
DEFAULT_FAULT_KINDS: tuple[Fault, ...] = (429, 500, 502, 503)
_PIL_FORMATS: dict[str, ImageFormat] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_SUFFIXES: dict[ImageFormat, str] = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


def solid_image(
    width: int, height: int, colour: Colour, image_format: ImageFormat = "PNG"
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format=image_format)
    return buf.getvalue()


def solid_png(width: int, height: int, colour: Colour) -> bytes:
    return solid_image(width, height, colour, "PNG")


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """A picture that does not compress: about 3 bytes a pixel."""
    buf = io.BytesIO()
    noise = random.Random(seed).randbytes(width * height * 3)
    Image.frombytes("RGB", (width, height), noise).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class FakeTogether(FakeServer):
    """Together.ai with a one-request-at-a-time limit per key (``concurrency``), as Together
    counts concurrency per account: one request more with the same key gets 429.

    Keys: ``expected_key`` is the one key accepted (any other: 401); ``keys`` maps each key this
    fake knows to what it answers, 200 (accepted), 401 (not a valid key) or 402 (no credit
    left), in Together's published error shape; a key it does not know is a 401.
    ``key_of(rec)`` tells which key a recorded request carried, and ``overlapping(key)`` the
    pairs of that key's requests whose intervals overlapped.

    Knobs can be changed while running; ``script_of_statuses`` is consumed (popped) in order.
    Rate limits: ``retry_after`` sends ``Retry-After`` on every 429; ``ratelimit_reset`` sends
    ``x-ratelimit-reset`` (seconds to wait, or with ``reset_as="unix"`` the Unix time to wait
    for); ``rate_limited_for`` answers 429 to every generation for that many seconds after the
    first one arrives, each 429 saying to wait ``ratelimit_reset`` seconds (or what is left).
    """

    path = "/images/generations"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        expected_key: str | None = None,
        keys: Mapping[str, int] | None = None,
        concurrency: int = 1,
        script_of_statuses: Sequence[Fault] = (),
        retry_after: float | None = None,
        ratelimit_reset: float | None = None,
        reset_as: Literal["seconds", "unix"] = "seconds",
        rate_limited_for: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[Fault] = DEFAULT_FAULT_KINDS,
        seed: int = 0,
        hang_seconds: float = 60.0,
        palette: Sequence[Colour] = PALETTE,
        models: Sequence[dict[str, Any]] = DEFAULT_MODELS,
        answer_format: ImageFormat | None = None,
        answer_url: bool = False,
        image_url: Callable[[str], str] | None = None,
        generates_after_hangup: bool = False,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.latency = latency
        self.expected_key = expected_key
        self.keys: dict[str, int] | None = None if keys is None else dict(keys)
        self.concurrency = concurrency  # requests at once per key; one more is a 429
        # While set and not open, every generation waits for it (a test holds the requests in
        # flight until it has seen what it waits for).
        self.gate: asyncio.Event | None = None
        self.in_flight_by_key: Counter[str] = Counter()  # generating now, per key
        self.max_in_flight_by_key: Counter[str] = Counter()
        self.script_of_statuses: list[Fault] = list(script_of_statuses)
        self.retry_after = retry_after
        self.ratelimit_reset = ratelimit_reset
        self.reset_as = reset_as
        self.rate_limited_for = rate_limited_for
        self.fault_rate = fault_rate
        self.fault_kinds: list[Fault] = list(fault_kinds)
        self.rng = random.Random(seed)
        self.hang_seconds = hang_seconds
        self.palette: list[Colour] = list(palette)
        self.models: list[dict[str, Any]] = [dict(m) for m in models]
        # Answer in this format whatever output_format asks (a model or proxy that does).
        self.answer_format = answer_format
        # Answer a URL even when base64 is asked (a model that only answers by URL).
        self.answer_url = answer_url
        # For URL answers: where the answer points (default: this fake's own file).
        self.image_url = image_url
        self.file_faults: list[int] = []  # statuses the image files answer first, in order
        # True: like Together.ai, an image is generated to its end, and counted against the
        # concurrency limit, even when the client hangs up before the answer. False: hanging
        # up stops it (the default, for tests whose tiny client timeouts race a busy machine).
        self.generates_after_hangup = generates_after_hangup
        self._orphans: set[asyncio.Task[web.Response]] = set()  # generating, client gone
        self._orphan_keys: dict[int, str] = {}  # id of an orphan's request → its key
        self.overlaps = 0  # requests that arrived while another was in flight (answered 429)
        self.successes = 0  # images generated (whether or not the client stayed for them)
        self.rate_limited = 0  # 429s sent by the rate-limit window
        self.model_requests: list[RecordedRequest] = []  # GET /v1/models
        self.file_requests: list[str] = []  # GETs of the images served by URL
        self.file_auth: list[str | None] = []  # their Authorization headers (None: none)
        self._files: dict[str, tuple[bytes, str]] = {}
        self._window_start: float | None = None

    @property
    def colours(self) -> list[Colour]:
        """Colours of the images returned so far, in order."""
        return [r.colour for r in self.requests if r.colour is not None]

    def state(self) -> dict[str, Any]:
        return {**super().state(), "overlaps": self.overlaps, "colours": self.colours}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/files/{name}", self._file)

    def image_models(self) -> set[str]:
        return {m["id"] for m in self.models if m.get("type") == "image"}

    # ------------------------------------------------------------ POST /v1/images/generations

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        key = self.key_of(rec)
        self.in_flight_by_key[key] += 1
        self.max_in_flight_by_key[key] = max(self.max_in_flight_by_key[key],
                                             self.in_flight_by_key[key])  # fmt: skip
        handed_over = False  # to a generation that outlives the request (the client hung up)
        try:
            response = await self._respond(request, rec, key)
        except asyncio.CancelledError:
            handed_over = self._orphan_keys.pop(id(rec), None) is not None
            raise
        finally:
            if not handed_over:
                self.in_flight_by_key[key] -= 1
        return response

    @staticmethod
    def key_of(rec: RecordedRequest) -> str:
        """The key a request carried ("" if none)."""
        auth = {k.lower(): v for k, v in rec.headers.items()}.get("authorization", "")
        return _bearer(auth)

    def overlapping(self, key: str) -> list[tuple[RecordedRequest, RecordedRequest]]:
        """Pairs of generation requests with `key` whose intervals overlapped."""
        mine = sorted((r for r in self.requests if self.key_of(r) == key and r.t_end is not None),
                      key=lambda r: r.t_start)  # fmt: skip
        return [(a, b) for i, a in enumerate(mine) for b in mine[i + 1 :]
                if b.t_start < (a.t_end or 0.0)]  # fmt: skip

    async def _respond(self, request: web.Request, rec: RecordedRequest, key: str) -> web.Response:
        if self.in_flight_by_key[key] > self.concurrency:
            self.overlaps += 1
            return self._fault_response(429)
        status = self._key_refusal(key)
        if status is not None:
            return self._fault_response(status)
        refused = self.violates(GENERATION, rec)
        if refused is not None:
            return refused
        if rec.json["model"] not in self.image_models():
            return _unknown_model(rec.json["model"])
        wait = self._rate_limit_wait()
        if wait is not None:
            self.rate_limited += 1
            return self._fault_response(429, reset=wait)
        fault = self._next_fault()
        if fault == "hang":
            await asyncio.sleep(self.hang_seconds)
            return error_response(504, "Upstream request timed out", "server_error")
        if fault in BAD_ANSWERS:
            return self._bad_answer(str(fault), rec)
        if isinstance(fault, str):
            raise ValueError(f"unknown fault {fault!r}: use an HTTP status, 'hang' or a bad answer")
        if isinstance(fault, int) and fault != 200:
            return self._fault_response(fault)
        return await self._generate(request, rec)

    def _key_refusal(self, key: str) -> int | None:
        """401 or 402 if the key is not accepted, else None."""
        if self.keys is not None:
            status = self.keys.get(key, 401)
            return None if status == 200 else status
        if not key or (self.expected_key is not None and key != self.expected_key):
            return 401
        return None

    def _authorised(self, request: web.Request) -> bool:
        """GET /v1/models: any key but one that is not valid (402: no credit, but a key)."""
        return self._key_refusal(_bearer(request.headers.get("Authorization", ""))) != 401

    def _rate_limit_wait(self) -> float | None:
        """Seconds to tell the client to wait, while the rate-limit window lasts."""
        if self.rate_limited_for <= 0:
            return None
        now = time.monotonic()
        if self._window_start is None:
            self._window_start = now
        left = self._window_start + self.rate_limited_for - now
        if left <= 0:
            return None
        return min(left, self.ratelimit_reset) if self.ratelimit_reset else left

    def _next_fault(self) -> Fault | None:
        if self.script_of_statuses:
            return self.script_of_statuses.pop(0)
        if self.fault_kinds and self.rng.random() < self.fault_rate:
            return self.rng.choice(self.fault_kinds)
        return None

    def _fault_response(self, status: int, *, reset: float | None = None) -> web.Response:
        message, type_, code = _FAULTS.get(status, (f"Fake error {status}", "server_error", None))
        headers: dict[str, str] = {}
        if status == 429:
            headers["Via"] = "1.1 fake"
            if self.retry_after is not None:
                headers["Retry-After"] = _number(self.retry_after)
            reset = reset if reset is not None else self.ratelimit_reset
            if reset is not None:
                headers["x-ratelimit-reset"] = self._reset_header(reset)
        return error_response(status, message, type_, code, **headers)

    def _reset_header(self, seconds: float) -> str:
        if self.reset_as == "unix":
            return f"{time.time() + seconds:.3f}"
        return _number(seconds)

    async def stop(self) -> None:
        for orphan in list(self._orphans):
            orphan.cancel()
        await super().stop()

    async def _generate(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        if not self.generates_after_hangup:
            return await self._draw(request, rec)
        work = asyncio.ensure_future(self._draw(request, rec))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:  # the client hung up: the generation goes on
            self.in_flight += 1  # the request's handler takes one off as it ends
            key = self.key_of(rec)
            self._orphan_keys[id(rec)] = key  # its key stays busy until the work ends
            self._orphans.add(work)
            work.add_done_callback(lambda done: self._orphan_done(done, key))
            raise

    def _orphan_done(self, work: asyncio.Task[web.Response], key: str) -> None:
        self._orphans.discard(work)
        self.in_flight -= 1
        self.in_flight_by_key[key] -= 1

    async def _draw(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        body = rec.json
        width, height = int(body.get("width", 1024)), int(body.get("height", 1024))
        asked = _PIL_FORMATS[body.get("output_format", "jpeg")]
        image_format = self.answer_format or asked
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.latency)
        colour = self.palette[self.successes % len(self.palette)]
        self.successes += 1
        rec.colour, rec.image_format = colour, image_format
        picture = self.picture(width, height, colour, image_format)
        data = [
            self._item(index, picture, image_format, request, body.get("response_format"))
            for index in range(int(body.get("n", 1)))
        ]
        answer = {"id": f"fake-{self.successes:06d}", "model": body["model"], "object": "list",
                  "data": data}  # fmt: skip
        return web.json_response(answer)

    def _bad_answer(self, kind: str, rec: RecordedRequest) -> web.Response:
        """A 200 that is not a usable image (see BAD_ANSWERS), in the published shape."""
        body = rec.json if isinstance(rec.json, dict) else {}
        width, height = int(body.get("width", 1024)), int(body.get("height", 1024))
        if kind == "html":
            page = "<!DOCTYPE html><html><body><h1>Welcome!</h1>Sign in to continue.</body></html>"
            return web.Response(text=page, content_type="text/html")
        picture = {
            "not-an-image": lambda: b"this is not a picture\n" * 20,
            "tiny": lambda: solid_png(1, 1, (0, 0, 0)),
            "oversize": lambda: solid_png(4160, 64, (0, 0, 0)),
            "heavy": lambda: noise_png(width, height),
        }[kind]()
        b64 = base64.b64encode(picture).decode("ascii")
        item = {"index": 0, "b64_json": b64, "type": "b64_json"}
        return web.json_response({"id": f"fake-{len(self.requests):06d}",
                                  "model": str(body.get("model", "")), "object": "list",
                                  "data": [item]})  # fmt: skip

    def picture(self, width: int, height: int, colour: Colour, image_format: ImageFormat) -> bytes:
        """The image answered (a subclass may draw something else)."""
        return solid_image(width, height, colour, image_format)

    def _item(
        self,
        index: int,
        picture: bytes,
        image_format: ImageFormat,
        request: web.Request,
        response_format: str | None,
    ) -> dict[str, Any]:
        if response_format != "url" and not self.answer_url:  # "base64", the default
            b64 = base64.b64encode(picture).decode("ascii")
            return {"index": index, "b64_json": b64, "type": "b64_json"}
        name = f"{self.successes:06d}-{index}.{_SUFFIXES[image_format]}"
        self._files[name] = (picture, f"image/{image_format.lower()}")
        own = f"http://127.0.0.1:{self.port}/files/{name}"
        return {"index": index, "url": self.image_url(own) if self.image_url else own,
                "type": "url"}  # fmt: skip

    # ------------------------------------------------------------ GET /v1/models, files

    async def _models(self, request: web.Request) -> web.Response:
        rec = RecordedRequest("GET", request.path, dict(request.headers), time.monotonic(), 1)
        self.model_requests.append(rec)
        response = (
            web.json_response(self.models) if self._authorised(request)
            else self._fault_response(401)
        )  # fmt: skip
        rec.status, rec.t_end = response.status, time.monotonic()
        return response

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.file_requests.append(name)
        self.file_auth.append(request.headers.get("Authorization"))
        if self.file_faults:
            return web.Response(status=self.file_faults.pop(0), text="fault")
        if name not in self._files:
            return web.Response(status=404, text="Not Found")
        data, content_type = self._files[name]
        return web.Response(body=data, content_type=content_type)


def _bearer(authorization: str) -> str:
    return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""


def _unknown_model(model: str) -> web.Response:
    return error_response(
        404,
        f"Unable to access model {model}. Please visit https://api.together.ai/models to view "
        "the list of supported models.",
        "invalid_request_error",
        "model_not_available",
    )


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{math.ceil(value * 1000) / 1000:g}"


def _fault_arg(text: str) -> Fault:
    return text if text == "hang" or text in BAD_ANSWERS else int(text)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.together", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--expected-key")
    p.add_argument("--script", default="", help="comma-separated statuses, 'hang', 'tiny', ...")
    p.add_argument("--retry-after", type=float)
    p.add_argument("--ratelimit-reset", type=float)
    p.add_argument("--rate-limited-for", type=float, default=0.0)
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
        ratelimit_reset=args.ratelimit_reset,
        rate_limited_for=args.rate_limited_for,
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
