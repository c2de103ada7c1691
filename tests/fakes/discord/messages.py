"""Message objects: creation, edits, uploads and Discord's validation errors."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.contracts import discord_limits

from .models import (
    JSON,
    attachment_payload,
    guess_content_type,
    iso_now,
    snowflake,
    upload_limit_of,
)
from .state import (
    FLAG_LOADING,
    DiscordState,
    InjectedInteraction,
    RecordedMessage,
    Revision,
    Upload,
)

LIMITS = discord_limits()
MAX_CONTENT_LENGTH = LIMITS["message"]["content"]
MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_CHAT_INPUT_COMMAND = 20
FLAG_HAS_THREAD = 1 << 5


class ApiError(Exception):
    """An error response in Discord's shape: ``{"message": ..., "code": ...}``."""

    def __init__(
        self, status: int, message: str, code: int = 0, errors: JSON | None = None
    ) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors

    def body(self) -> JSON:
        body: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def unknown_channel() -> ApiError:
    return ApiError(404, "Unknown Channel", 10003)


def unknown_message() -> ApiError:
    return ApiError(404, "Unknown Message", 10008)


@dataclass
class RequestBody:
    """A JSON body, or a multipart one (``payload_json`` + ``files[n]``)."""

    payload: JSON = field(default_factory=dict)
    files: dict[int, tuple[str, bytes]] = field(default_factory=dict)


@dataclass
class Knobs:
    """Behaviour switches a test may flip at any time."""

    # None: each guild's published limit, by its boost level (a DM: 10 MiB). A number: a smaller
    # limit than the one the bot can know (as when a guild lost its boost), for the 413 path.
    upload_size_limit: int | None = None
    interaction_deadline: float | None = 3.0
    old_message_edit_limit: float | None = None  # seconds; older messages' edits fail (30046)


class MessageStore:
    """Creates and edits :class:`RecordedMessage` objects in :class:`DiscordState`."""

    def __init__(self, state: DiscordState, knobs: Knobs, base_url: Callable[[], str]) -> None:
        self._state = state
        self._knobs = knobs
        self._base_url = base_url

    def cdn_urls(self, channel_id: int, attachment_id: int, filename: str) -> tuple[str, str]:
        quoted = urllib.parse.quote(filename)
        path = f"attachments/{channel_id}/{attachment_id}/{quoted}"
        expires = f"{int(time.time()) + 86_400:x}"
        query = f"?ex={expires}&is={int(time.time()):x}&hm=fake{attachment_id:x}&"
        base = self._base_url()
        return f"{base}/cdn/{path}{query}", f"{base}/media/{path}{query}"

    def create(
        self,
        channel_id: int,
        body: RequestBody,
        *,
        interaction: InjectedInteraction | None = None,
        flags: int | None = None,
    ) -> RecordedMessage:
        if self._state.channel_payload(channel_id) is None:
            raise unknown_channel()
        payload = body.payload
        flags = int(payload.get("flags") or 0) if flags is None else flags
        _validate_content(payload.get("content") or "")
        validate_embeds(payload.get("embeds"))
        if not flags & FLAG_LOADING:
            _validate_not_empty(payload, has_files=bool(body.files))
        message_id = snowflake()
        uploads = self._store_uploads(channel_id, message_id, body)
        data = self._base_payload(message_id, channel_id, interaction)
        data.update(
            content=payload.get("content") or "",
            embeds=payload.get("embeds") or [],
            components=payload.get("components") or [],
            attachments=self._attachments(payload, uploads, []),
            flags=flags,
        )
        if payload.get("nonce") is not None:
            data["nonce"] = payload["nonce"]
        message = RecordedMessage(
            id=message_id,
            channel_id=channel_id,
            data=data,
            revisions=[Revision(time.monotonic(), data["content"], payload, uploads)],
            interaction_id=None if interaction is None else interaction.id,
        )
        self._state.add_message(message)
        self._bump_thread(channel_id, message_id)
        return message

    def edit(
        self, message: RecordedMessage, body: RequestBody, *, check_age: bool = True
    ) -> RecordedMessage:
        age = time.monotonic() - message.created_at
        limit = self._knobs.old_message_edit_limit
        if check_age and limit is not None and age > limit:
            raise ApiError(
                400,
                "Maximum number of edits to messages older than 1 hour reached. Try again later",
                30046,
            )
        payload = body.payload
        _validate_content(payload.get("content") or "")
        validate_embeds(payload.get("embeds"))
        uploads = self._store_uploads(message.channel_id, message.id, body)
        data = message.data
        for key in ("content", "embeds", "components"):
            if key in payload:
                data[key] = payload[key] if payload[key] is not None else _empty(key)
        if "flags" in payload and payload["flags"] is not None:
            data["flags"] = int(payload["flags"])
        data["flags"] = int(data.get("flags", 0)) & ~FLAG_LOADING
        data["attachments"] = self._attachments(payload, uploads, data.get("attachments", []))
        data["edited_timestamp"] = iso_now()
        message.revisions.append(Revision(time.monotonic(), data["content"], payload, uploads))
        return message

    def get(self, channel_id: int | None, message_id: int) -> RecordedMessage:
        message = self._state.messages_by_id.get(message_id)
        if message is None or message.deleted:
            raise unknown_message()
        if channel_id is not None and message.channel_id != channel_id:
            raise unknown_message()
        return message

    def register_cdn_file(
        self, channel_id: int, attachment_id: int, filename: str, data: bytes, content_type: str
    ) -> str:
        self._state.cdn[attachment_id] = (filename, data, content_type)
        return self.cdn_urls(channel_id, attachment_id, filename)[0]

    def upload_limit(self, channel_id: int) -> int:
        """The most a file sent to `channel_id` may weigh: its guild's limit, by boost level."""
        if self._knobs.upload_size_limit is not None:
            return self._knobs.upload_size_limit
        guild = self._state.guild_of_channel(channel_id)
        return upload_limit_of(None if guild is None else guild.premium_tier)

    def _store_uploads(self, channel_id: int, message_id: int, body: RequestBody) -> list[Upload]:
        described = {int(a["id"]): a for a in body.payload.get("attachments", []) if "id" in a}
        limit = self.upload_limit(channel_id)
        if any(len(data) > limit for _, data in body.files.values()):
            too_large = LIMITS["uploads"]["too_large"]
            raise ApiError(too_large["status"], too_large["message"], too_large["code"])
        if len(body.files) > LIMITS["message"]["files"]:
            raise invalid_form_body(
                "attachments",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {LIMITS['message']['files']} or fewer in length.",
            )
        uploads: list[Upload] = []
        for index, (part_filename, data) in sorted(body.files.items()):
            filename = described.get(index, {}).get("filename") or part_filename
            attachment_id = snowflake()
            content_type = guess_content_type(filename)
            url = self.register_cdn_file(channel_id, attachment_id, filename, data, content_type)
            upload = Upload(
                filename=filename,
                data=data,
                content_type=content_type,
                channel_id=channel_id,
                message_id=message_id,
                attachment_id=attachment_id,
                url=url,
                at=time.monotonic(),
            )
            uploads.append(upload)
        self._state.uploads.extend(uploads)
        return uploads

    def _attachments(
        self, payload: JSON, uploads: list[Upload], existing: list[JSON]
    ) -> list[JSON]:
        """Kept attachments (all, or those listed in ``payload["attachments"]``) + new uploads."""
        if "attachments" in payload:
            listed = {str(a.get("id")) for a in payload["attachments"] or []}
            kept = [a for a in existing if a["id"] in listed]
        else:
            kept = list(existing)
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        new = []
        for index, upload in enumerate(uploads):
            url, proxy_url = self.cdn_urls(upload.channel_id, upload.attachment_id, upload.filename)
            description = described.get(str(index), {}).get("description")
            new.append(
                attachment_payload(
                    upload.attachment_id,
                    upload.filename,
                    upload.size,
                    upload.content_type,
                    url,
                    proxy_url,
                    description,
                )
            )
        return kept + new

    def _base_payload(
        self, message_id: int, channel_id: int, interaction: InjectedInteraction | None
    ) -> JSON:
        guild = self._state.guild_of_channel(channel_id)
        data: JSON = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": self._state.bot_user.payload(),
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "type": MESSAGE_TYPE_DEFAULT,
        }
        if guild is not None:
            data["guild_id"] = str(guild.id)
        if interaction is not None:
            data.update(_interaction_fields(self._state.application_id, interaction))
        return data

    def _bump_thread(self, channel_id: int, message_id: int) -> None:
        thread = self._state.threads.get(channel_id)
        if thread is not None:
            thread.data["message_count"] += 1
            thread.data["total_message_sent"] += 1
            thread.data["last_message_id"] = str(message_id)


def _interaction_fields(application_id: int, interaction: InjectedInteraction) -> JSON:
    user = interaction.payload.get("member", {}).get("user") or interaction.payload.get("user")
    is_command = interaction.type == 2
    return {
        "webhook_id": str(application_id),
        "application_id": str(application_id),
        "type": MESSAGE_TYPE_CHAT_INPUT_COMMAND if is_command else MESSAGE_TYPE_DEFAULT,
        "interaction_metadata": {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": user,
            "authorizing_integration_owners": interaction.payload.get(
                "authorizing_integration_owners", {}
            ),
        },
    }


def _empty(key: str) -> Any:
    return "" if key == "content" else []


def invalid_form_body(where: str, code: str, message: str) -> ApiError:
    """Discord's 50035 with the offending field, e.g. ``embeds.0.description``."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(where.split(".")):
        errors = {part: errors}
    form = LIMITS["errors"]["invalid_form_body"]
    return ApiError(form["status"], form["message"], form["code"], errors)


def _validate_content(content: str) -> None:
    if len(content) > MAX_CONTENT_LENGTH:
        raise invalid_form_body(
            "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT_LENGTH} or fewer in length."
        )


def validate_embeds(embeds: Any) -> None:
    """The published embed limits (tests/contracts/discord-limits.yaml): each part's length,
    25 fields, 10 embeds, and 6000 characters over all a message's embeds."""
    if not embeds:
        return
    limits = LIMITS["embed"]
    if len(embeds) > LIMITS["message"]["embeds"]:
        raise invalid_form_body(
            "embeds",
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {LIMITS['message']['embeds']} or fewer in length.",
        )
    total = 0
    for index, embed in enumerate(embeds):
        parts = {
            "title": embed.get("title"),
            "description": embed.get("description"),
            "footer.text": (embed.get("footer") or {}).get("text"),
            "author.name": (embed.get("author") or {}).get("name"),
        }
        fields = embed.get("fields") or []
        if len(fields) > limits["fields"]:
            raise invalid_form_body(
                f"embeds.{index}.fields",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {limits['fields']} or fewer in length.",
            )
        for number, item in enumerate(fields):
            parts[f"fields.{number}.name"] = item.get("name")
            parts[f"fields.{number}.value"] = item.get("value")
        for where, text in parts.items():
            if text is None:
                continue
            key = where.replace(".", "_") if not where.startswith("fields.") else (
                "field_" + where.rsplit(".", 1)[1])  # fmt: skip
            if len(text) > limits[key]:
                raise invalid_form_body(
                    f"embeds.{index}.{where}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limits[key]} or fewer in length.",
                )
            total += len(text)
    if total > limits["total"]:
        raise invalid_form_body(
            "embeds",
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {limits['total']}",
        )


def _validate_not_empty(payload: JSON, *, has_files: bool) -> None:
    keys = ("content", "embeds", "components", "sticker_ids", "poll")
    if not has_files and not any(payload.get(key) for key in keys):
        raise ApiError(400, "Cannot send an empty message", 50006)
