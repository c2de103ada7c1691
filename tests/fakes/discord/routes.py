"""Handlers for the REST routes discord.py calls, wired to :class:`RestApi`."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from tests.fakes.contracts import discord_limits

from .gateway import INTENT_GUILDS
from .messages import FLAG_HAS_THREAD, ApiError, Knobs, unknown_channel
from .models import JSON, ChannelType, snowflake, thread_payload
from .rest import (
    API_PREFIXES,
    Handler,
    RestApi,
    json_response,
    no_content,
    path_int,
    read_body,
)
from .state import RecordedMessage, ThreadRecord
from .webhooks import InteractionRoutes

# Interaction callbacks and webhooks are authenticated by their token in the URL.
NO_AUTH_KINDS = frozenset(
    {
        "get_gateway",
        "interaction_callback",
        "execute_webhook",
        "get_webhook_message",
        "edit_webhook_message",
        "delete_webhook_message",
    }
)
DM_LIMITS = discord_limits()["dm"]
CDN_PATH = "/attachments/{channel_id}/{attachment_id}/{filename}"


class Routes:
    def __init__(self, api: RestApi, knobs: Knobs, gateway_url: Callable[[], str]) -> None:
        self.api = api
        self.state = api.state
        self.messages = api.messages
        self.knobs = knobs
        self._gateway_url = gateway_url
        self.hooks = InteractionRoutes(api, knobs)

    def table(self) -> list[tuple[str, str, str, Handler]]:
        """(method, path, kind, handler); kinds in ``NO_AUTH_KINDS`` skip the bot token check."""
        app = "/applications/{application_id}"
        hook = "/webhooks/{application_id}/{token}"
        hook_msg = f"{hook}/messages/{{message_id}}"
        chan = "/channels/{channel_id}"
        msg = f"{chan}/messages/{{message_id}}"
        return [
            ("GET", "/users/@me", "get_current_user", self.get_current_user),
            ("GET", "/oauth2/applications/@me", "get_application", self.get_application),
            ("GET", "/applications/@me", "get_application", self.get_application),
            ("GET", "/gateway", "get_gateway", self.get_gateway),
            ("GET", "/gateway/bot", "get_gateway", self.get_gateway),
            ("GET", f"{app}/commands", "get_commands", self.get_commands),
            ("PUT", f"{app}/commands", "sync_commands", self.put_commands),
            ("GET", f"{app}/guilds/{{guild_id}}/commands", "get_commands", self.get_commands),
            ("PUT", f"{app}/guilds/{{guild_id}}/commands", "sync_commands", self.put_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", "interaction_callback",
             self.hooks.interaction_callback),
            ("POST", hook, "execute_webhook", self.hooks.execute_webhook),
            ("GET", hook_msg, "get_webhook_message", self.hooks.get_hook_msg),
            ("PATCH", hook_msg, "edit_webhook_message", self.hooks.edit_hook_msg),
            ("DELETE", hook_msg, "delete_webhook_message", self.hooks.del_hook_msg),
            ("GET", chan, "get_channel", self.get_channel),
            ("POST", f"{chan}/typing", "typing", self.typing),
            ("GET", f"{chan}/messages", "get_messages", self.get_messages),
            ("POST", f"{chan}/messages", "create_message", self.create_message),
            ("GET", msg, "get_message", self.get_message),
            ("PATCH", msg, "edit_message", self.edit_message),
            ("DELETE", msg, "delete_message", self.delete_message),
            ("POST", f"{msg}/threads", "start_thread_with_message", self.thread_from_message),
            ("POST", f"{chan}/threads", "start_thread", self.start_thread),
            ("GET", "/guilds/{guild_id}/members/{user_id}", "get_member", self.get_member),
            ("POST", "/users/@me/channels", "create_dm", self.create_dm),
        ]  # fmt: skip

    def kinds(self) -> frozenset[str]:
        base = {kind for _, _, kind, _ in self.table()} | {"cdn_download"}
        return frozenset(base | {f"{kind}_with_files" for kind in base})

    def install(self, app: web.Application, gateway_handler: Handler) -> None:
        for prefix in API_PREFIXES:
            for method, path, kind, handler in self.table():
                wrapped = self.api.wrap(kind, handler, auth=kind not in NO_AUTH_KINDS)
                app.router.add_route(method, prefix + path, wrapped)
        cdn = self.api.wrap("cdn_download", self.cdn_download, auth=False)
        for prefix in ("/cdn", "/media"):
            app.router.add_get(prefix + CDN_PATH, cdn)
        for path in ("/", "/gateway", "/gateway/"):
            app.router.add_get(path, gateway_handler)
        app.router.add_route("*", "/{tail:.*}", self.api.unhandled)

    # -- login / application ------------------------------------------------------

    async def get_current_user(self, request: web.Request) -> web.Response:
        user = self.state.bot_user.payload()
        user.update(verified=True, mfa_enabled=False, locale="en-US", email=None, premium_type=0)
        return json_response(user)

    async def get_application(self, request: web.Request) -> web.Response:
        owner = self.state.guilds[0].members[0].user if self.state.guilds else self.state.bot_user
        return json_response(
            {
                "id": str(self.state.application_id),
                "name": self.state.bot_user.username,
                "icon": None,
                "description": "",
                "summary": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": self.state.bot_user.payload(),
                "rpc_origins": [],
                "interactions_endpoint_url": None,
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return json_response(
            {"url": self._gateway_url(), "shards": 1, "session_start_limit": limit}
        )

    # -- application commands -------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if path_int(request, "application_id") != self.state.application_id:
            raise ApiError(403, "Missing Access", 50001)
        if "guild_id" not in request.match_info:
            return None
        guild_id = path_int(request, "guild_id")
        if self.state.guild(guild_id) is None:
            raise ApiError(403, "Missing Access", 50001)
        return guild_id

    async def get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.state.commands.get(self._command_scope(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        existing = {c["name"]: c for c in self.state.commands.get(scope, [])}
        result = [
            self._stored_command(c, scope, existing.get(c["name"])) for c in await request.json()
        ]
        self.state.commands[scope] = result
        self.state.command_syncs.append(scope)
        return json_response(result)

    def _stored_command(self, command: JSON, scope: int | None, previous: JSON | None) -> JSON:
        stored: JSON = {
            "type": 1,
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "name_localizations": None,
            "description_localizations": None,
            **command,
            "id": previous["id"] if previous else str(snowflake()),
            "application_id": str(self.state.application_id),
            "version": str(snowflake()),
        }
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    # -- channels and messages ---------------------------------------------------------

    def _channel(self, request: web.Request) -> tuple[int, JSON]:
        channel_id = path_int(request, "channel_id")
        channel = self.state.channel_payload(channel_id)
        if channel is None:
            raise unknown_channel()
        return channel_id, channel

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel(request)[1])

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return no_content()

    async def get_messages(self, request: web.Request) -> web.Response:
        channel_id, _ = self._channel(request)
        limit = int(request.query.get("limit", 50))
        before = int(request.query.get("before", 1 << 63))
        after = int(request.query.get("after", 0))
        found = [
            m.data
            for m in reversed(self.state.messages.get(channel_id, []))
            if not m.deleted and after < m.id < before
        ]
        return json_response(found[:limit])

    async def create_message(self, request: web.Request) -> web.Response:
        channel_id, _ = self._channel(request)
        if self.state.dm_recipient(channel_id) in self.state.dms_refused:
            refused = DM_LIMITS["cannot_message_user"]
            raise ApiError(refused["status"], refused["message"], refused["code"])
        message = self.messages.create(channel_id, await read_body(request))
        await self.api.announce_message(message, "MESSAGE_CREATE")
        return json_response(message.data)

    def _message(self, request: web.Request) -> RecordedMessage:
        channel_id, _ = self._channel(request)
        return self.messages.get(channel_id, path_int(request, "message_id"))

    async def get_message(self, request: web.Request) -> web.Response:
        return json_response(self._message(request).data)

    async def edit_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        self.messages.edit(message, await read_body(request))
        await self.api.announce_message(message, "MESSAGE_UPDATE")
        return json_response(message.data)

    async def delete_message(self, request: web.Request) -> web.Response:
        return await self.api.delete_message(self._message(request))

    # -- threads ---------------------------------------------------------------------

    async def thread_from_message(self, request: web.Request) -> web.Response:
        channel_id, channel = self._channel(request)
        message = self._message(request)
        if channel["type"] not in (ChannelType.TEXT, ChannelType.NEWS):
            raise ApiError(400, "Cannot execute action on this channel type", 50024)
        if message.id in self.state.threads:
            raise ApiError(400, "A thread has already been created for this message", 160004)
        body = await request.json()
        is_news = channel["type"] == ChannelType.NEWS
        thread = await self._create_thread(
            thread_id=message.id,
            parent_id=channel_id,
            body=body,
            thread_type=ChannelType.NEWS_THREAD if is_news else ChannelType.PUBLIC_THREAD,
            starter_message_id=message.id,
        )
        message.data["thread"] = thread.data
        message.data["flags"] = int(message.data.get("flags", 0)) | FLAG_HAS_THREAD
        return json_response(thread.data)

    async def start_thread(self, request: web.Request) -> web.Response:
        channel_id, channel = self._channel(request)
        if channel["type"] not in (ChannelType.TEXT, ChannelType.NEWS):
            raise ApiError(400, "Cannot execute action on this channel type", 50024)
        body = await request.json()
        thread_type = int(body.get("type") or ChannelType.PRIVATE_THREAD)
        thread = await self._create_thread(
            thread_id=snowflake(), parent_id=channel_id, body=body, thread_type=thread_type
        )
        return json_response(thread.data)

    async def _create_thread(
        self,
        *,
        thread_id: int,
        parent_id: int,
        body: JSON,
        thread_type: int,
        starter_message_id: int | None = None,
    ) -> ThreadRecord:
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            error = {
                "code": "BASE_TYPE_BAD_LENGTH",
                "message": "Must be between 1 and 100 in length.",
            }
            raise ApiError(400, "Invalid Form Body", 50035, {"name": {"_errors": [error]}})
        guild = self.state.guild_of_channel(parent_id)
        assert guild is not None
        data = thread_payload(
            thread_id=thread_id,
            guild_id=guild.id,
            parent_id=parent_id,
            owner_id=self.state.bot_user.id,
            name=name,
            thread_type=thread_type,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        thread = ThreadRecord(
            thread_id, guild.id, parent_id, name, data, time.monotonic(), starter_message_id
        )
        self.state.threads[thread_id] = thread
        await self.api.gateway.dispatch(
            "THREAD_CREATE", {**data, "newly_created": True}, intent=INTENT_GUILDS
        )
        return thread

    # -- direct messages --------------------------------------------------------------

    async def create_dm(self, request: web.Request) -> web.Response:
        """Create DM (developers/resources/user.mdx): the DM channel with `recipient_id`,
        the same one each time. Opening it always works; a user whose privacy settings refuse
        the bot's DMs makes sending in it fail (50007), as on Discord."""
        body = await request.json()
        if set(body) != {"recipient_id"}:
            raise ApiError(
                400,
                "Invalid Form Body",
                50035,
                {
                    "recipient_id": {
                        "_errors": [
                            {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}
                        ]
                    }
                },
            )
        user = self.state.user(int(body["recipient_id"]))
        if user is None:
            unknown = DM_LIMITS["unknown_user"]
            raise ApiError(unknown["status"], unknown["message"], unknown["code"])
        channel = self.state.dm_channels.get(user.id)
        if channel is None:
            channel = {
                "id": str(snowflake()),
                "type": ChannelType.DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [user.payload()],
            }
            self.state.dm_channels[user.id] = channel
        return json_response(channel)

    # -- guild members and CDN -----------------------------------------------------------

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self.state.guild(path_int(request, "guild_id"))
        if guild is None:
            raise ApiError(404, "Unknown Guild", 10004)
        member = guild.get_member(path_int(request, "user_id"))
        if member is None:
            raise ApiError(404, "Unknown Member", 10007)
        return json_response(member.payload())

    async def cdn_download(self, request: web.Request) -> web.Response:
        entry = self.state.cdn.get(int(request.match_info["attachment_id"]))
        if entry is None:
            return web.Response(status=404, text="Not Found")
        _, data, content_type = entry
        self.state.cdn_downloads.append(int(request.match_info["attachment_id"]))
        return web.Response(body=data, headers={"Content-Type": content_type})
