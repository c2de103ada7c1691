"""Builders for INTERACTION_CREATE payloads (slash commands, components; modal submits are
`modals.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .models import (
    JSON,
    AttachmentSpec,
    ChannelSpec,
    GuildSpec,
    MemberSpec,
    RoleSpec,
    UserSpec,
    attachment_payload,
    snowflake,
)

INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5

OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_MENTIONABLE = 9
OPTION_ATTACHMENT = 11


@dataclass
class InteractionContext:
    """Where and by whom an interaction happens."""

    guild: GuildSpec
    channel: JSON  # channel or thread payload
    member: MemberSpec
    app_permissions: int
    attachment_size_limit: int
    locale: str = "en-US"


def base_interaction(
    *, kind: int, application_id: int, ctx: InteractionContext, data: JSON
) -> JSON:
    guild = ctx.guild
    member = ctx.member.payload()
    member["permissions"] = str(guild.permissions_for(ctx.member))
    channel = dict(ctx.channel)
    channel["permissions"] = member["permissions"]
    return {
        "id": str(snowflake()),
        "application_id": str(application_id),
        "type": kind,
        "data": data,
        "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
        "guild_id": str(guild.id),
        "guild_locale": guild.locale,
        "channel": channel,
        "channel_id": channel["id"],
        "member": member,
        "token": f"fake-interaction-token-{snowflake()}",
        "version": 1,
        "app_permissions": str(ctx.app_permissions),
        "locale": ctx.locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
        "attachment_size_limit": ctx.attachment_size_limit,
    }


class OptionBuilder:
    """Turns ``{"name": value}`` into typed options + ``resolved`` per the synced schema."""

    def __init__(
        self, guild: GuildSpec, cdn_urls: Callable[[AttachmentSpec], tuple[str, str]]
    ) -> None:
        self._guild = guild
        self._cdn_urls = cdn_urls
        self.resolved: dict[str, dict[str, JSON]] = {}
        self.attachments: list[AttachmentSpec] = []

    def build(
        self,
        schema: list[JSON],
        path: list[str],
        values: Mapping[str, Any],
        focused: str | None = None,
    ) -> list[JSON]:
        """``focused``: an autocomplete's option being typed (its value is the partial text,
        sent as a string whatever its type; required options may still be missing)."""
        if path:
            sub = _find_option(schema, path[0], (OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP))
            inner = self.build(sub.get("options", []), path[1:], values, focused)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        options: list[JSON] = []
        for name, value in values.items():
            declared = _find_option(schema, name, None)
            if name == focused:
                if not declared.get("autocomplete"):
                    raise ValueError(f"option {name!r} was not declared with autocomplete")
                options.append({"name": name, "type": declared["type"], "value": str(value),
                                "focused": True})  # fmt: skip
                continue
            options.append(
                {"name": name, "type": declared["type"], "value": self._value(declared, value)}
            )
        if focused is not None:
            if focused not in values:
                raise ValueError(f"the focused option {focused!r} needs a (partial) value")
            return options
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"required option(s) missing: {missing}")
        return options

    def _value(self, declared: JSON, value: Any) -> Any:
        kind = declared["type"]
        if kind == OPTION_ATTACHMENT:
            return self._attachment(_expect(value, AttachmentSpec, declared))
        if kind == OPTION_USER or (kind == OPTION_MENTIONABLE and not isinstance(value, RoleSpec)):
            return self._user(value)
        if kind in (OPTION_ROLE, OPTION_MENTIONABLE):
            role = _expect(value, RoleSpec, declared)
            self._resolve("roles", role.id, role.payload())
            return str(role.id)
        if kind == OPTION_CHANNEL:
            channel = _expect(value, ChannelSpec, declared)
            payload = channel.payload(self._guild.id)
            payload["permissions"] = str(self._guild.everyone_permissions)
            self._resolve("channels", channel.id, payload)
            return str(channel.id)
        return value

    def _attachment(self, attachment: AttachmentSpec) -> str:
        url, proxy_url = self._cdn_urls(attachment)
        payload = attachment_payload(
            attachment.id,
            attachment.filename,
            attachment.effective_size,
            attachment.effective_content_type,
            url,
            proxy_url,
            attachment.description,
        )
        payload["ephemeral"] = True  # interaction uploads are ephemeral attachments
        self._resolve("attachments", attachment.id, payload)
        self.attachments.append(attachment)
        return str(attachment.id)

    def _user(self, value: Any) -> str:
        member = value if isinstance(value, MemberSpec) else None
        user = member.user if member else _expect(value, UserSpec, {"name": "user"})
        self._resolve("users", user.id, user.payload())
        if member is not None:
            data = member.payload(with_user=False)
            data["permissions"] = str(self._guild.permissions_for(member))
            self._resolve("members", user.id, data)
        return str(user.id)

    def _resolve(self, bucket: str, key: int, payload: JSON) -> None:
        self.resolved.setdefault(bucket, {})[str(key)] = payload


def _find_option(schema: list[JSON], name: str, types: tuple[int, ...] | None) -> JSON:
    for option in schema:
        if option["name"] == name and (types is None or option["type"] in types):
            return option
    raise ValueError(f"command has no option {name!r} (declared: {[o['name'] for o in schema]})")


def _expect(value: Any, kind: type[Any], declared: JSON) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"option {declared['name']!r} needs a {kind.__name__}, got {value!r}")
    return value
