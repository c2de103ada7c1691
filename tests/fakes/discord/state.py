"""Recorded state of the fake Discord server, and waiting on it without sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .models import JSON, GuildSpec, UserSpec

R = TypeVar("R")

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7


@dataclass
class Upload:
    """One file received in a multipart request (and now served from the fake CDN)."""

    filename: str
    data: bytes
    content_type: str
    channel_id: int
    message_id: int
    attachment_id: int
    url: str
    at: float

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Revision:
    """One version of a message: its creation or one edit."""

    at: float
    content: str
    body: JSON
    uploads: list[Upload] = field(default_factory=list)


@dataclass
class RecordedMessage:
    id: int
    channel_id: int
    data: JSON
    revisions: list[Revision]
    interaction_id: int | None = None
    deleted_at: float | None = None

    @property
    def created_at(self) -> float:
        return self.revisions[0].at

    @property
    def content(self) -> str:
        return str(self.data.get("content", ""))

    @property
    def edits(self) -> list[Revision]:
        return self.revisions[1:]

    @property
    def attachments(self) -> list[JSON]:
        return list(self.data.get("attachments", []))

    @property
    def components(self) -> list[JSON]:
        return list(self.data.get("components", []))

    @property
    def embeds(self) -> list[JSON]:
        return list(self.data.get("embeds", []))

    @property
    def flags(self) -> int:
        return int(self.data.get("flags", 0))

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass
class ThreadRecord:
    id: int
    guild_id: int
    parent_id: int
    name: str
    data: JSON
    created_at: float
    starter_message_id: int | None = None


@dataclass
class CallbackRecord:
    """One POST /interactions/{id}/{token}/callback."""

    interaction_id: int
    type: int
    body: JSON
    uploads: list[Upload]
    at: float
    elapsed: float  # seconds since the interaction was dispatched

    @property
    def data(self) -> JSON:
        return dict(self.body.get("data") or {})

    @property
    def content(self) -> str | None:
        return self.data.get("content")


@dataclass
class RequestRecord:
    method: str
    path: str
    kind: str
    status: int
    at: float


@dataclass
class Fault:
    """A forced response for the next request of one route kind."""

    status: int | None = None  # None: only delay, then handle normally
    code: int = 0
    message: str | None = None
    retry_after: float = 1.0
    is_global: bool = False
    delay: float = 0.0


class InjectedInteraction:
    """Handle on an interaction the test injected; await its response through it."""

    def __init__(self, state: DiscordState, payload: JSON) -> None:
        self._state = state
        self.payload = payload
        self.id = int(payload["id"])
        self.token = str(payload["token"])
        self.type = int(payload["type"])
        self.channel_id = int(payload["channel_id"])
        self.guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        self.dispatched_at = time.monotonic()
        self.callbacks: list[CallbackRecord] = []
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []
        if "message" in payload:  # component interactions update the clicked message
            self.original_message_id = int(payload["message"]["id"])

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def response(self) -> CallbackRecord | None:
        return self.callbacks[0] if self.callbacks else None

    @property
    def modal(self) -> JSON | None:
        """The modal the bot answered with (callback type 9), if any."""
        response = self.response
        return response.data if response is not None and response.type == 9 else None

    @property
    def original(self) -> RecordedMessage | None:
        if self.original_message_id is None:
            return None
        return self._state.messages_by_id.get(self.original_message_id)

    @property
    def followups(self) -> list[RecordedMessage]:
        return [self._state.messages_by_id[i] for i in self.followup_ids]

    async def wait_response(self, timeout: float = 10.0) -> CallbackRecord:
        """The interaction callback (defer, message, modal, ...) once it arrived."""
        await self._state.wait_for(
            lambda: self.acknowledged, timeout, f"response to interaction {self.id}"
        )
        assert self.response is not None
        return self.response

    async def wait_followups(self, count: int = 1, timeout: float = 10.0) -> list[RecordedMessage]:
        await self._state.wait_for(
            lambda: len(self.followup_ids) >= count, timeout, f"{count} followup(s) to {self.id}"
        )
        return self.followups


class DiscordState:
    """Everything the fake knows and records. Mutate, then ``await changed()``."""

    def __init__(self, *, bot_user: UserSpec, application_id: int, guilds: list[GuildSpec]) -> None:
        self.bot_user = bot_user
        self.application_id = application_id
        self.guilds = guilds
        self.messages: dict[int, list[RecordedMessage]] = {}
        self.messages_by_id: dict[int, RecordedMessage] = {}
        self.threads: dict[int, ThreadRecord] = {}
        self.uploads: list[Upload] = []
        self.interactions: dict[int, InjectedInteraction] = {}
        self.interaction_responses: list[CallbackRecord] = []
        self.followups: list[RecordedMessage] = []
        self.commands: dict[int | None, list[JSON]] = {}
        self.command_syncs: list[int | None] = []
        self.dm_channels: dict[int, JSON] = {}  # user id -> the DM channel opened with them
        self.dms_refused: set[int] = set()  # users whose privacy settings refuse the bot's DMs
        self.cdn: dict[int, tuple[str, bytes, str]] = {}
        self.cdn_downloads: list[int] = []
        self.requests: list[RequestRecord] = []
        self.unhandled: list[str] = []
        self.server_errors: list[str] = []  # exceptions raised inside the fake itself
        self.identifies: list[JSON] = []
        self.resumes = 0
        self.heartbeats = 0
        self.ready_sent = 0
        self._changed = asyncio.Condition()

    async def changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[], R | None],
        timeout: float = 10.0,
        what: str | None = None,
        poll: float = 0.05,
    ) -> R:
        """Wait until ``predicate()`` is truthy and return its value (None means "not yet").

        Re-checked on every state change of the fake, and every ``poll`` seconds so
        predicates on the bot's own state (which the fake cannot observe) work too.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._changed:
            while not (result := predicate()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    label = what or getattr(predicate, "__name__", "condition")
                    raise TimeoutError(
                        f"fake discord: timed out after {timeout}s waiting for {label}"
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(poll, remaining)):
                        await self._changed.wait()
            assert result is not None  # it is truthy
            return result

    # -- lookups ---------------------------------------------------------------

    def guild(self, guild_id: int) -> GuildSpec | None:
        return next((g for g in self.guilds if g.id == guild_id), None)

    def guild_of_channel(self, channel_id: int) -> GuildSpec | None:
        """The guild owning a channel or thread; None if the id is unknown."""
        thread = self.threads.get(channel_id)
        if thread is not None:
            return self.guild(thread.guild_id)
        return next((g for g in self.guilds if any(c.id == channel_id for c in g.channels)), None)

    def dm_recipient(self, channel_id: int) -> int | None:
        """The user a DM channel is with; None if `channel_id` is no DM channel."""
        return next((u for u, c in self.dm_channels.items() if int(c["id"]) == channel_id), None)

    def user(self, user_id: int) -> UserSpec | None:
        """A user any guild has as a member (Discord knows them; the fake knows no others)."""
        for guild in self.guilds:
            member = guild.get_member(user_id)
            if member is not None:
                return member.user
        return None

    def channel_payload(self, channel_id: int) -> JSON | None:
        recipient = self.dm_recipient(channel_id)
        if recipient is not None:
            return self.dm_channels[recipient]
        thread = self.threads.get(channel_id)
        if thread is not None:
            return thread.data
        for guild in self.guilds:
            for position, channel in enumerate(guild.channels):
                if channel.id == channel_id:
                    return channel.payload(guild.id, position)
        return None

    def all_messages(self) -> list[RecordedMessage]:
        return sorted(self.messages_by_id.values(), key=lambda m: m.id)

    def add_message(self, message: RecordedMessage) -> None:
        self.messages.setdefault(message.channel_id, []).append(message)
        self.messages_by_id[message.id] = message

    def interaction_by_token(self, token: str) -> InjectedInteraction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def synced_command(self, name: str, guild_id: int | None) -> tuple[JSON, int | None] | None:
        """The synced command named ``name``: guild commands first, then global."""
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, scope
        return None
