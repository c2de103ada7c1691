"""The fake gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME.

Speaks JSON encoding. When the client asks for ``compress=zlib-stream`` every
frame is one zlib stream chunk flushed with Z_SYNC_FLUSH (ending in 00 00 ff ff),
like Discord. Any other transport compression (zstd-stream) is answered with
plain text frames, which discord.py accepts as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from .models import JSON
from .state import DiscordState

log = logging.getLogger(__name__)

OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE = 3
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_DECODE_ERROR = 4002

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9


class GatewaySession:
    """One websocket connection."""

    def __init__(self, ws: web.WebSocketResponse, *, zlib_stream: bool) -> None:
        self.ws = ws
        self.session_id: str | None = None
        self.seq = 0
        self.intents = 0
        self._compressor = zlib.compressobj() if zlib_stream else None
        self._send_lock = asyncio.Lock()

    @property
    def identified(self) -> bool:
        return self.session_id is not None and not self.ws.closed

    async def send(self, payload: JSON) -> None:
        text = json.dumps(payload)
        async with self._send_lock:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionResetError):
                if self._compressor is None:
                    await self.ws.send_str(text)
                else:
                    chunk = self._compressor.compress(text.encode())
                    await self.ws.send_bytes(chunk + self._compressor.flush(zlib.Z_SYNC_FLUSH))

    async def dispatch(self, event: str, data: JSON) -> None:
        self.seq += 1
        await self.send({"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data})


class GatewayHub:
    """Accepts gateway connections and fans dispatches out to identified sessions."""

    def __init__(
        self,
        state: DiscordState,
        *,
        token: str,
        gateway_url: Callable[[], str],
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self._state = state
        self._token = token
        self._gateway_url = gateway_url
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: list[GatewaySession] = []
        self.connections: list[dict[str, str]] = []  # query of every connection
        self._known_sessions: dict[str, int] = {}  # session_id -> last seq

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections.append(dict(request.query))
        compress = request.query.get("compress")
        session = GatewaySession(ws, zlib_stream=compress == "zlib-stream")
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=CLOSE_DECODE_ERROR, message=b"only encoding=json is supported")
            return ws
        self.sessions.append(session)
        try:
            await session.send(
                {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            )
            await self._receive_loop(session)
        finally:
            self.sessions.remove(session)
            if session.session_id is not None:
                self._known_sessions[session.session_id] = session.seq
            await self._state.changed()
        return ws

    async def _receive_loop(self, session: GatewaySession) -> None:
        async for message in session.ws:
            if message.type is not WSMsgType.TEXT:
                await session.ws.close(code=CLOSE_DECODE_ERROR, message=b"send JSON text frames")
                return
            payload = json.loads(message.data)
            await self._on_payload(session, int(payload.get("op", -1)), payload.get("d"))
            await self._state.changed()

    async def _on_payload(self, session: GatewaySession, op: int, data: Any) -> None:
        if op == OP_HEARTBEAT:
            self._state.heartbeats += 1
            await session.send({"op": OP_HEARTBEAT_ACK})
        elif op == OP_IDENTIFY:
            await self._identify(session, data)
        elif op == OP_RESUME:
            await self._resume(session, data)
        elif op == OP_REQUEST_MEMBERS:
            await self._send_member_chunk(session, data)
        elif op != OP_PRESENCE:
            log.warning("fake gateway: ignoring op %s", op)

    async def _identify(self, session: GatewaySession, data: JSON) -> None:
        if data.get("token") != self._token:
            await session.ws.close(
                code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed."
            )
            return
        self._state.identifies.append(data)
        session.intents = int(data.get("intents", 0))
        session.session_id = uuid.uuid4().hex
        await session.dispatch("READY", self._ready_payload(session.session_id))
        for guild in self._state.guilds:
            await session.dispatch("GUILD_CREATE", self._guild_create_payload(guild.id))
        self._state.ready_sent += 1

    async def _resume(self, session: GatewaySession, data: JSON) -> None:
        session_id = str(data.get("session_id"))
        if data.get("token") != self._token or session_id not in self._known_sessions:
            await session.send({"op": OP_INVALID_SESSION, "d": False})
            return
        session.session_id = session_id
        session.seq = max(self._known_sessions.pop(session_id), int(data.get("seq") or 0))
        self._state.resumes += 1
        await session.dispatch("RESUMED", {})

    async def _send_member_chunk(self, session: GatewaySession, data: JSON) -> None:
        guild = self._state.guild(int(data["guild_id"]))
        members = [] if guild is None else [m.payload() for m in guild.members]
        chunk: JSON = {
            "guild_id": str(data["guild_id"]),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    def _ready_payload(self, session_id: str) -> JSON:
        return {
            "v": 10,
            "user": self._state.bot_user.payload(),
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self._state.guilds],
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": self._gateway_url(),
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "application": {"id": str(self._state.application_id), "flags": 0},
            "_trace": ["fake-discord"],
        }

    def _guild_create_payload(self, guild_id: int) -> JSON:
        guild = self._state.guild(guild_id)
        assert guild is not None
        payload = guild.payload()
        payload["threads"] = [
            t.data for t in self._state.threads.values() if t.guild_id == guild_id
        ]
        return payload

    async def dispatch(self, event: str, data: JSON, *, intent: int | None = None) -> None:
        """Send a dispatch to every identified session (having ``intent``, if given)."""
        for session in list(self.sessions):
            if session.identified and (intent is None or session.intents & intent):
                await session.dispatch(event, data)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py reconnects and RESUMEs."""
        for session in list(self.sessions):
            await session.send({"op": OP_RECONNECT, "d": None})

    async def close_all(self, code: int = 1001) -> None:
        for session in list(self.sessions):
            await session.ws.close(code=code, message=b"fake discord shutting down")
