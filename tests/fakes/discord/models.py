"""Guild/user specs and wire payload builders for the fake Discord server.

The specs describe the world the fake serves (guilds, channels, roles, members,
attachments); the ``*_payload`` helpers turn them into the JSON objects Discord
sends, shaped closely enough that an unmodified discord.py builds its models
from them.
"""

from __future__ import annotations

import itertools
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from tests.fakes.contracts import discord_limits

JSON = dict[str, Any]
T = TypeVar("T")

DISCORD_EPOCH_MS = 1_420_070_400_000
_increment = itertools.count()


def snowflake() -> int:
    """A fresh, time-ordered Discord snowflake (unique within this process)."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (ms << 22) | (next(_increment) & 0xFFF)


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


class ChannelType:
    TEXT = 0
    DM = 1
    VOICE = 2
    CATEGORY = 4
    NEWS = 5
    NEWS_THREAD = 10
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12


class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 53) - 1


DEFAULT_EVERYONE_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.SEND_MESSAGES_IN_THREADS
)


@dataclass
class UserSpec:
    username: str = "tester"
    id: int = field(default_factory=snowflake)
    bot: bool = False
    global_name: str | None = None

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class RoleSpec:
    name: str
    permissions: int = 0
    id: int = field(default_factory=snowflake)
    position: int = 1

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class ChannelSpec:
    name: str = "general"
    type: int = ChannelType.TEXT
    id: int = field(default_factory=snowflake)
    parent_id: int | None = None
    topic: str | None = None

    def payload(self, guild_id: int, position: int = 0) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(guild_id),
            "name": self.name,
            "position": position,
            "permission_overwrites": [],
            "parent_id": None if self.parent_id is None else str(self.parent_id),
            "nsfw": False,
            "flags": 0,
        }
        if self.type == ChannelType.VOICE:
            data.update(bitrate=64000, user_limit=0, rtc_region=None, last_message_id=None)
        elif self.type != ChannelType.CATEGORY:
            data.update(topic=self.topic, last_message_id=None, rate_limit_per_user=0)
        return data


@dataclass
class MemberSpec:
    user: UserSpec = field(default_factory=UserSpec)
    roles: list[RoleSpec] = field(default_factory=list)
    nick: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    def payload(self, *, with_user: bool = True) -> JSON:
        data: JSON = {
            "roles": [str(role.id) for role in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


def _default_channels() -> list[ChannelSpec]:
    return [ChannelSpec("general")]


def _default_members() -> list[MemberSpec]:
    return [MemberSpec()]


@dataclass
class GuildSpec:
    """One guild. The bot's member (with ``bot_roles``) is added by the fake."""

    name: str = "Fake Guild"
    id: int = field(default_factory=snowflake)
    channels: list[ChannelSpec] = field(default_factory=_default_channels)
    roles: list[RoleSpec] = field(default_factory=list)
    members: list[MemberSpec] = field(default_factory=_default_members)
    bot_roles: list[RoleSpec] = field(default_factory=list)
    everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS
    owner_id: int | None = None
    locale: str = "en-US"
    premium_tier: int = 0  # boost level 0-3; sets the upload limit (tests/contracts/)

    @property
    def filesize_limit(self) -> int:
        """What a file sent to this guild may weigh, by its boost level (as Discord and
        discord.py's Guild.filesize_limit have it)."""
        return upload_limit_of(self.premium_tier)

    def channel(self, name: str) -> ChannelSpec:
        return _by_name(self.channels, name, lambda c: c.name)

    def role(self, name: str) -> RoleSpec:
        return _by_name(self.all_roles(), name, lambda r: r.name)

    def member(self, username: str) -> MemberSpec:
        return _by_name(self.members, username, lambda m: m.user.username)

    def get_member(self, user_id: int) -> MemberSpec | None:
        return next((m for m in self.members if m.id == user_id), None)

    def all_roles(self) -> list[RoleSpec]:
        """Declared roles plus any role referenced by a member, deduplicated by id."""
        seen: dict[int, RoleSpec] = {}
        for role in [*self.roles, *(r for m in self.members for r in m.roles)]:
            seen.setdefault(role.id, role)
        return list(seen.values())

    def permissions_for(self, member: MemberSpec) -> int:
        if member.id == self.effective_owner_id:
            return Perm.ALL
        perms = self.everyone_permissions
        for role in member.roles:
            perms |= role.permissions
        return Perm.ALL if perms & Perm.ADMINISTRATOR else perms

    @property
    def effective_owner_id(self) -> int:
        if self.owner_id is not None:
            return self.owner_id
        humans = [m for m in self.members if not m.user.bot]
        return (humans or self.members)[0].id

    def everyone_role(self) -> RoleSpec:
        return RoleSpec("@everyone", self.everyone_permissions, id=self.id, position=0)

    def payload(self) -> JSON:
        """The GUILD_CREATE payload."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.effective_owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": self.locale,
            "system_channel_id": str(self.channels[0].id) if self.channels else None,
            "system_channel_flags": 0,
            "features": [],
            "roles": [r.payload() for r in [self.everyone_role(), *self.all_roles()]],
            "emojis": [],
            "stickers": [],
            "channels": [c.payload(self.id, i) for i, c in enumerate(self.channels)],
            "threads": [],
            "members": [m.payload() for m in self.members],
            "member_count": len(self.members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "application_id": None,
        }


@dataclass
class AttachmentSpec:
    """A file a user attaches to an interaction; served from the fake CDN."""

    filename: str
    data: bytes = b""
    content_type: str | None = None
    size: int | None = None
    id: int = field(default_factory=snowflake)
    description: str | None = None

    @property
    def effective_size(self) -> int:
        return len(self.data) if self.size is None else self.size

    @property
    def effective_content_type(self) -> str:
        return self.content_type or guess_content_type(self.filename)


def upload_limit_of(premium_tier: int | None) -> int:
    """The published upload limit of a guild at `premium_tier` (None: no guild, a DM)."""
    uploads = discord_limits()["uploads"]
    if premium_tier is None:
        return int(uploads["default_bytes"])
    return int(uploads["by_premium_tier"][premium_tier])


def guess_content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def attachment_payload(
    attachment_id: int,
    filename: str,
    size: int,
    content_type: str,
    url: str,
    proxy_url: str,
    description: str | None = None,
) -> JSON:
    data: JSON = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": proxy_url,
        "content_type": content_type,
        "flags": 0,
    }
    if description is not None:
        data["description"] = description
    return data


def thread_payload(
    *,
    thread_id: int,
    guild_id: int,
    parent_id: int,
    owner_id: int,
    name: str,
    thread_type: int = ChannelType.PUBLIC_THREAD,
    auto_archive_duration: int = 1440,
) -> JSON:
    now = iso_now()
    return {
        "id": str(thread_id),
        "type": thread_type,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "rate_limit_per_user": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": now,
            "locked": False,
            "invitable": True,
            "create_timestamp": now,
        },
        "member": {
            "id": str(thread_id),
            "user_id": str(owner_id),
            "join_timestamp": now,
            "flags": 0,
        },
    }


def _by_name(items: list[T], name: str, key: Callable[[T], str]) -> T:
    for item in items:
        if key(item) == name:
            return item
    raise KeyError(f"no item named {name!r} (have {[key(i) for i in items]})")
