"""Resolving where an injected interaction happens (guild, channel, member, permissions)."""

from __future__ import annotations

from typing import Any, TypeVar

from .interactions import InteractionContext
from .messages import Knobs
from .models import JSON, ChannelSpec, GuildSpec, MemberSpec
from .state import DiscordState, InjectedInteraction, ThreadRecord

R = TypeVar("R")


class ContextResolver:
    def __init__(self, state: DiscordState, knobs: Knobs) -> None:
        self._state = state
        self._knobs = knobs

    def resolve(
        self,
        *,
        guild: GuildSpec | int | None = None,
        channel: ChannelSpec | ThreadRecord | int | str | None = None,
        member: MemberSpec | str | None = None,
        app_permissions: int | None = None,
        attachment_size_limit: int | None = None,
        locale: str = "en-US",
    ) -> InteractionContext:
        """Where an interaction happens.

        guild: spec or id (default: first guild). channel: spec, thread, id or name
        (default: the guild's first channel). member: spec or username (default: first
        non-bot member). app_permissions: bot permissions (default: computed from the
        bot's roles). attachment_size_limit: what the invoking user may upload (their Nitro
        included); default: the guild's limit.
        """
        guild_spec = self._guild(guild, channel)
        channel_payload = self._channel_payload(guild_spec, channel)
        member_spec = self._member(guild_spec, member)
        bot_member = guild_spec.get_member(self._state.bot_user.id)
        assert bot_member is not None
        return InteractionContext(
            guild=guild_spec,
            channel=channel_payload,
            member=member_spec,
            app_permissions=(
                guild_spec.permissions_for(bot_member)
                if app_permissions is None
                else app_permissions
            ),
            attachment_size_limit=attachment_size_limit or guild_spec.filesize_limit,
            locale=locale,
        )

    def _guild(self, guild: GuildSpec | int | None, channel: Any) -> GuildSpec:
        if isinstance(guild, GuildSpec):
            return guild
        if guild is not None:
            return _required(self._state.guild(guild), f"guild {guild}")
        if isinstance(channel, int):
            return _required(self._state.guild_of_channel(channel), f"channel {channel}")
        if isinstance(channel, ThreadRecord):
            return _required(self._state.guild(channel.guild_id), f"guild {channel.guild_id}")
        if isinstance(channel, ChannelSpec):
            return _required(self._state.guild_of_channel(channel.id), f"channel {channel.id}")
        return self._state.guilds[0]

    def _channel_payload(self, guild: GuildSpec, channel: Any) -> JSON:
        if channel is None:
            channel = guild.channels[0]
        if isinstance(channel, str):
            channel = guild.channel(channel)
        channel_id = channel if isinstance(channel, int) else channel.id
        return _required(self._state.channel_payload(channel_id), f"channel {channel_id}")

    def _member(self, guild: GuildSpec, member: MemberSpec | str | None) -> MemberSpec:
        if isinstance(member, MemberSpec):
            return member
        if isinstance(member, str):
            return guild.member(member)
        humans = [m for m in guild.members if not m.user.bot]
        return _required(humans[0] if humans else None, "a non-bot member")

    def where_of(self, source: InjectedInteraction | None) -> dict[str, Any]:
        if source is None:
            return {}
        member = source.payload.get("member", {}).get("user", {}).get("id")
        guild = self._state.guild(source.guild_id) if source.guild_id else None
        found = guild.get_member(int(member)) if guild is not None and member else None
        return {"channel": source.channel_id, "member": found}


def has_custom_id(component: JSON, custom_id: str) -> bool:
    if component.get("custom_id") == custom_id:
        return True
    children = list(component.get("components", []))
    for key in ("component", "accessory"):
        if key in component:
            children.append(component[key])
    return any(has_custom_id(child, custom_id) for child in children)


def _required(value: R | None, what: str) -> R:
    if value is None:
        raise LookupError(f"fake discord: unknown {what}")
    return value
