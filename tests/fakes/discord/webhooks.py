"""Interaction callbacks and interaction webhooks (followups, ``@original`` edits)."""

from __future__ import annotations

import time

from aiohttp import web

from .messages import ApiError, Knobs, RequestBody, unknown_message
from .modals import validate_modal
from .models import JSON
from .rest import RestApi, json_response, no_content, path_int, read_body
from .state import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    CallbackRecord,
    InjectedInteraction,
    RecordedMessage,
)

CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
CALLBACK_DEFERRED_UPDATE = 6
CALLBACK_UPDATE_MESSAGE = 7
CALLBACK_AUTOCOMPLETE_RESULT = 8
CALLBACK_MODAL = 9
INTERACTION_AUTOCOMPLETE = 4
KNOWN_CALLBACK_TYPES = frozenset({1, 4, 5, 6, 7, 8, 9, 10, 12})


class InteractionRoutes:
    """``/interactions/{id}/{token}/callback`` and ``/webhooks/{app}/{token}/...``."""

    def __init__(self, api: RestApi, knobs: Knobs) -> None:
        self.api = api
        self.state = api.state
        self.messages = api.messages
        self.knobs = knobs

    async def interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self.state.interactions.get(path_int(request, "interaction_id"))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise ApiError(404, "Unknown interaction", 10062)
        elapsed = time.monotonic() - interaction.dispatched_at
        if interaction.acknowledged:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        deadline = self.knobs.interaction_deadline
        if deadline is not None and elapsed > deadline:
            raise ApiError(404, "Unknown interaction", 10062)
        body = await read_body(request)
        callback_type = int(body.payload.get("type", 0))
        if callback_type not in KNOWN_CALLBACK_TYPES:
            raise ApiError(400, "Invalid Form Body", 50035)
        # An autocomplete is answered with choices (type 8), and only an autocomplete is.
        if (callback_type == CALLBACK_AUTOCOMPLETE_RESULT) != (
            interaction.type == INTERACTION_AUTOCOMPLETE
        ) or not _valid_choices(callback_type, body.payload.get("data")):
            raise ApiError(400, "Invalid Form Body", 50035)
        if callback_type == CALLBACK_MODAL:
            validate_modal(dict(body.payload.get("data") or {}))
        message = await self._apply_callback(interaction, callback_type, body)
        uploads = message.revisions[-1].uploads if message is not None else []
        record = CallbackRecord(
            interaction.id, callback_type, body.payload, uploads, time.monotonic(), elapsed
        )
        interaction.callbacks.append(record)
        self.state.interaction_responses.append(record)
        return json_response(_callback_result(interaction, callback_type, message))

    async def _apply_callback(
        self, interaction: InjectedInteraction, callback_type: int, body: RequestBody
    ) -> RecordedMessage | None:
        data = RequestBody(dict(body.payload.get("data") or {}), body.files)
        if callback_type == CALLBACK_MESSAGE:
            message = self.messages.create(interaction.channel_id, data, interaction=interaction)
        elif callback_type == CALLBACK_DEFERRED_MESSAGE:
            flags = FLAG_LOADING | (int(data.payload.get("flags") or 0) & FLAG_EPHEMERAL)
            message = self.messages.create(
                interaction.channel_id, RequestBody(), interaction=interaction, flags=flags
            )
        elif callback_type == CALLBACK_UPDATE_MESSAGE:
            if interaction.original is None:
                raise ApiError(400, "Interaction has no message to update", 50035)
            message = self.messages.edit(interaction.original, data)
            await self.api.announce_message(message, "MESSAGE_UPDATE")
            return message
        else:
            return None
        interaction.original_message_id = message.id
        await self.api.announce_message(message, "MESSAGE_CREATE")
        return message

    def _hook_interaction(self, request: web.Request) -> InjectedInteraction:
        interaction = self.state.interaction_by_token(request.match_info["token"])
        app_matches = path_int(request, "application_id") == self.state.application_id
        if interaction is None or not app_matches or not interaction.acknowledged:
            raise ApiError(404, "Unknown Webhook", 10015)
        return interaction

    def _hook_message(self, request: web.Request) -> tuple[InjectedInteraction, RecordedMessage]:
        interaction = self._hook_interaction(request)
        raw = request.match_info["message_id"]
        message_id = (
            interaction.original_message_id
            if raw == "@original"
            else path_int(request, "message_id")
        )
        if message_id is None or (
            message_id != interaction.original_message_id
            and message_id not in interaction.followup_ids
        ):
            raise unknown_message()
        return interaction, self.messages.get(None, message_id)

    async def execute_webhook(self, request: web.Request) -> web.Response:
        interaction = self._hook_interaction(request)
        body = await read_body(request)
        loading = interaction.original
        if loading is not None and loading.flags & FLAG_LOADING:
            # Like Discord: the first followup after a deferred "thinking" response
            # replaces the loading message (keeping its ephemerality).
            body = _keep_ephemeral_flag(body, loading.flags)
            message = self.messages.edit(loading, body, check_age=False)
            event = "MESSAGE_UPDATE"
        else:
            channel_id = int(request.query.get("thread_id") or interaction.channel_id)
            message = self.messages.create(channel_id, body, interaction=interaction)
            event = "MESSAGE_CREATE"
        interaction.followup_ids.append(message.id)
        self.state.followups.append(message)
        await self.api.announce_message(message, event)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message.data)
        return no_content()

    async def get_hook_msg(self, request: web.Request) -> web.Response:
        return json_response(self._hook_message(request)[1].data)

    async def edit_hook_msg(self, request: web.Request) -> web.Response:
        _, message = self._hook_message(request)
        self.messages.edit(message, await read_body(request))
        await self.api.announce_message(message, "MESSAGE_UPDATE")
        return json_response(message.data)

    async def del_hook_msg(self, request: web.Request) -> web.Response:
        return await self.api.delete_message(self._hook_message(request)[1])


def _valid_choices(callback_type: int, data: object) -> bool:
    """Discord's rules for an autocomplete result: 0-25 choices, each a name of 1-100
    characters and a string value of at most 100."""
    if callback_type != CALLBACK_AUTOCOMPLETE_RESULT:
        return True
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or len(choices) > 25:
        return False
    return all(
        isinstance(c, dict)
        and isinstance(c.get("name"), str)
        and 1 <= len(c["name"]) <= 100
        and isinstance(c.get("value"), str | int | float)
        and len(str(c["value"])) <= 100
        for c in choices
    )


def _keep_ephemeral_flag(body: RequestBody, original_flags: int) -> RequestBody:
    flags = int(body.payload.get("flags") or 0) & ~FLAG_EPHEMERAL
    payload = {**body.payload, "flags": flags | (original_flags & FLAG_EPHEMERAL)}
    return RequestBody(payload, body.files)


def _callback_result(
    interaction: InjectedInteraction, callback_type: int, message: RecordedMessage | None
) -> JSON:
    summary: JSON = {
        "id": str(interaction.id),
        "type": interaction.type,
        "response_message_loading": callback_type == CALLBACK_DEFERRED_MESSAGE,
        "response_message_ephemeral": bool(message is not None and message.ephemeral),
    }
    result: JSON = {"interaction": summary}
    if message is not None:
        summary["response_message_id"] = str(message.id)
        result["resource"] = {"type": callback_type, "message": message.data}
    return result
