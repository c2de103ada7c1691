"""REST routes of the fake Discord API (``/api/v10/...``), CDN, faults and recording."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import BodyPartReader, web

from .gateway import INTENT_GUILD_MESSAGES, GatewayHub
from .messages import ApiError, MessageStore, RequestBody
from .models import JSON
from .state import DiscordState, Fault, RecordedMessage, RequestRecord

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIXES = ("/api/v10", "/api/v9", "/api")
# Route kinds that get a "<kind>_with_files" variant for multipart requests.
MULTIPART_KINDS = frozenset(
    {
        "create_message",
        "edit_message",
        "interaction_callback",
        "execute_webhook",
        "edit_webhook_message",
    }
)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON with ``Content-Type: application/json`` exactly (discord.py compares it verbatim)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def no_content() -> web.Response:
    return web.Response(status=204)


def rate_limit_response(fault: Fault, kind: str) -> web.Response:
    retry = fault.retry_after
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(math.ceil(retry)),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry:.3f}",
        "X-RateLimit-Reset-After": f"{retry:.3f}",
        "X-RateLimit-Bucket": f"fake-{kind}",
        "X-RateLimit-Scope": "global" if fault.is_global else "user",
    }
    if fault.is_global:
        headers["X-RateLimit-Global"] = "true"
    body: JSON = {
        "message": "You are being rate limited.",
        "retry_after": retry,
        "global": fault.is_global,
    }
    if fault.code:
        body["code"] = fault.code
    return json_response(body, 429, headers)


async def read_body(request: web.Request) -> RequestBody:
    if request.content_type == "multipart/form-data":
        return await _read_multipart(request)
    if request.can_read_body:
        return RequestBody(payload=await request.json())
    return RequestBody()


async def _read_multipart(request: web.Request) -> RequestBody:
    body = RequestBody()
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "payload_json":
            body.payload = json.loads(await part.text())
        elif part.name.startswith("files[") and part.name.endswith("]"):
            index = int(part.name[len("files[") : -1])
            body.files[index] = (part.filename or f"file{index}", bytes(await part.read()))
    return body


class RestApi:
    """Route table + the plumbing every route shares (auth, faults, recording)."""

    def __init__(
        self, state: DiscordState, gateway: GatewayHub, messages: MessageStore, *, token: str
    ) -> None:
        self.state = state
        self.gateway = gateway
        self.messages = messages
        self._token = token
        self.faults: dict[str, deque[Fault]] = {}

    def add_fault(self, kind: str, fault: Fault, times: int) -> None:
        queue = self.faults.setdefault(kind, deque())
        queue.extend(fault for _ in range(times))

    def wrap(self, kind: str, handler: Handler, *, auth: bool = True) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            actual = _specific_kind(kind, request)
            try:
                if auth:
                    self._check_auth(request)
                response = await self._maybe_fault(actual, kind) or await handler(request)
            except ApiError as error:
                response = json_response(error.body(), error.status)
            except Exception as error:  # a bug in the fake: fail fast (501 is not retried)
                log.exception("fake discord: %s %s crashed", request.method, request.path)
                self.state.server_errors.append(f"{request.method} {request.path}: {error!r}")
                response = json_response({"message": f"fake crashed: {error!r}", "code": 0}, 501)
            self.state.requests.append(
                RequestRecord(
                    request.method, request.path, actual, response.status, time.monotonic()
                )
            )
            await self.state.changed()
            return response

        return wrapped

    async def unhandled(self, request: web.Request) -> web.StreamResponse:
        self.state.unhandled.append(f"{request.method} {request.path}")
        self.state.requests.append(
            RequestRecord(request.method, request.path, "unhandled", 404, time.monotonic())
        )
        await self.state.changed()
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    def _check_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self._token}":
            raise ApiError(401, "401: Unauthorized")

    async def _maybe_fault(self, actual: str, generic: str) -> web.StreamResponse | None:
        fault = self._pop_fault(actual) or self._pop_fault(generic)
        if fault is None:
            return None
        if fault.delay:
            await asyncio.sleep(fault.delay)  # simulated server latency
        if fault.status is None:
            return None
        if fault.status == 429:
            return rate_limit_response(fault, actual)
        message = fault.message or _reason(fault.status)
        return json_response({"message": message, "code": fault.code}, fault.status)

    def _pop_fault(self, kind: str) -> Fault | None:
        queue = self.faults.get(kind)
        return queue.popleft() if queue else None

    # -- helpers shared by route modules ----------------------------------------

    async def announce_message(self, message: RecordedMessage, event: str) -> None:
        if not message.ephemeral:
            await self.gateway.dispatch(event, message.data, intent=INTENT_GUILD_MESSAGES)

    async def delete_message(self, message: RecordedMessage) -> web.Response:
        message.deleted_at = time.monotonic()
        event: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if "guild_id" in message.data:
            event["guild_id"] = message.data["guild_id"]
        if not message.ephemeral:
            await self.gateway.dispatch("MESSAGE_DELETE", event, intent=INTENT_GUILD_MESSAGES)
        return no_content()


def path_int(request: web.Request, key: str) -> int:
    try:
        return int(request.match_info[key])
    except ValueError:
        raise ApiError(400, "Invalid Form Body", 50035) from None


def _specific_kind(kind: str, request: web.Request) -> str:
    if kind in MULTIPART_KINDS and request.content_type == "multipart/form-data":
        return f"{kind}_with_files"
    return kind


def _reason(status: int) -> str:
    try:
        return f"{status}: {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status}: Error"
