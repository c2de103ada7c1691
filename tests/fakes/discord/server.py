"""A fake Discord (REST + gateway + CDN) on 127.0.0.1 for driving a real discord.py bot.

Usage::

    async with FakeDiscord(guilds=[GuildSpec(name="g")]) as fake:
        fake.install()  # point discord.py's Route.BASE / DEFAULT_GATEWAY here
        await bot.login(fake.token)
        ...
        handle = await fake.send_slash_command("echo", {"file": AttachmentSpec("a.txt", b"hi")})
        response = await handle.wait_response()

The pieces live beside it in ``tests/fakes/discord/``: models (specs + payloads), state
(recordings + waiting), gateway, messages, rest (plumbing), routes (handlers), webhooks
(interaction callbacks and followups), context (where an interaction happens) and
interactions (INTERACTION_CREATE builders). Its scope: README.md.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from tests.fakes.server import Service

from .context import ContextResolver, has_custom_id
from .gateway import GatewayHub
from .interactions import (
    INTERACTION_APPLICATION_COMMAND,
    INTERACTION_AUTOCOMPLETE,
    INTERACTION_COMPONENT,
    INTERACTION_MODAL_SUBMIT,
    InteractionContext,
    OptionBuilder,
    base_interaction,
)
from .messages import Knobs, MessageStore, RequestBody
from .modals import ModalAnswer, rows_submit
from .models import (
    JSON,
    AttachmentSpec,
    ChannelSpec,
    GuildSpec,
    MemberSpec,
    UserSpec,
)
from .rest import RestApi
from .routes import Routes
from .state import (
    CallbackRecord,
    DiscordState,
    Fault,
    InjectedInteraction,
    RecordedMessage,
    RequestRecord,
    ThreadRecord,
    Upload,
)

__all__ = ["FakeDiscord"]

R = TypeVar("R")
DEFAULT_TOKEN = "fake-bot-token"


class FakeDiscord(Service):
    """Fake Discord server. See the module docstring and the test file for usage."""

    def __init__(
        self,
        guilds: Sequence[GuildSpec] | None = None,
        *,
        bot_user: UserSpec | None = None,
        application_id: int | None = None,
        token: str = DEFAULT_TOKEN,
        upload_size_limit: int | None = None,
        interaction_deadline: float | None = 3.0,
        heartbeat_interval_ms: int = 41_250,
    ) -> None:
        self.token = token
        self.bot_user = bot_user or UserSpec("reelbot", bot=True)
        self.application_id = application_id or self.bot_user.id
        self.guilds = list(guilds) if guilds is not None else [GuildSpec()]
        for guild in self.guilds:
            if guild.get_member(self.bot_user.id) is None:
                guild.members.append(MemberSpec(self.bot_user, roles=list(guild.bot_roles)))
        self.knobs = Knobs(
            upload_size_limit=upload_size_limit, interaction_deadline=interaction_deadline
        )
        self.state = DiscordState(
            bot_user=self.bot_user, application_id=self.application_id, guilds=self.guilds
        )
        self.gateway = GatewayHub(
            self.state,
            token=token,
            gateway_url=lambda: self.gateway_url,
            heartbeat_interval_ms=heartbeat_interval_ms,
        )
        self._messages = MessageStore(self.state, self.knobs, lambda: self.url)
        self._rest = RestApi(self.state, self.gateway, self._messages, token=token)
        self._routes = Routes(self._rest, self.knobs, lambda: self.gateway_url)
        self._where = ContextResolver(self.state, self.knobs)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._saved_discord_urls: tuple[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=1024**3)
        self._routes.install(app, self.gateway.handle)
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        self.uninstall()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.gateway.close_all()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; CDN files live under ``/cdn`` and ``/media``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE`` (``[discord] api_base``)."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (wrap in ``yarl.URL``)."""
        return f"ws://127.0.0.1:{self._port}/gateway"

    def env(self) -> dict[str, str]:
        """Environment pointing a bot subprocess here (``bot.config.BotSettings`` names)."""
        return {
            "REELBOT_DISCORD__API_BASE": self.api_base,
            "REELBOT_DISCORD__GATEWAY_URL": self.gateway_url,
            "DISCORD_TOKEN": self.token,
        }

    def install(self) -> None:
        """Point this process's discord.py at the fake; undone by ``uninstall``/exit."""
        import yarl
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        if self._saved_discord_urls is None:
            self._saved_discord_urls = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    def uninstall(self) -> None:
        if self._saved_discord_urls is None:
            return
        from discord.gateway import DiscordWebSocket
        from discord.http import Route

        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved_discord_urls
        self._saved_discord_urls = None

    # -- recorded state ----------------------------------------------------------------

    @property
    def messages(self) -> dict[int, list[RecordedMessage]]:
        """channel/thread id -> messages in creation order (deleted ones flagged)."""
        return self.state.messages

    @property
    def threads(self) -> dict[int, ThreadRecord]:
        return self.state.threads

    @property
    def uploads(self) -> list[Upload]:
        return self.state.uploads

    @property
    def interaction_responses(self) -> list[CallbackRecord]:
        return self.state.interaction_responses

    @property
    def followups(self) -> list[RecordedMessage]:
        return self.state.followups

    @property
    def commands(self) -> dict[int | None, list[JSON]]:
        """Synced commands by guild id (``None``: global)."""
        return self.state.commands

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.requests

    @property
    def unhandled(self) -> list[str]:
        return self.state.unhandled

    @property
    def server_errors(self) -> list[str]:
        """Crashes inside the fake (answered with 501); should stay empty."""
        return self.state.server_errors

    def dms_with(self, user: UserSpec | MemberSpec) -> list[RecordedMessage]:
        """What the bot sent `user` in direct messages, oldest first."""
        user_id = user.id
        channel = self.state.dm_channels.get(user_id)
        return [] if channel is None else list(self.state.messages.get(int(channel["id"]), []))

    def refuse_dms(self, user: UserSpec | MemberSpec, refused: bool = True) -> None:
        """`user`'s privacy settings refuse the bot's direct messages: sending them one fails
        with 403 / 50007 "Cannot send messages to this user" (opening the DM still works)."""
        if refused:
            self.state.dms_refused.add(user.id)
        else:
            self.state.dms_refused.discard(user.id)

    def message(self, message_id: int) -> RecordedMessage:
        return self.state.messages_by_id[message_id]

    def requests_of(self, kind: str) -> list[RequestRecord]:
        return [r for r in self.state.requests if r.kind == kind or r.kind == f"{kind}_with_files"]

    async def wait_for(
        self, predicate: Callable[[], R | None], timeout: float = 10.0, what: str | None = None
    ) -> R:
        """Wait until ``predicate()`` is truthy and return its value (None means "not yet").

        Re-checked on every change of the fake's state and every 50 ms (so predicates
        on the bot's own state work too); raises TimeoutError naming ``what``.
        """
        return await self.state.wait_for(predicate, timeout, what)

    async def wait_until_ready_sent(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.state.ready_sent > 0, timeout, "READY")

    # -- fault knobs -------------------------------------------------------------------

    def fail_next(
        self,
        kind: str,
        status: int,
        *,
        code: int = 0,
        message: str | None = None,
        retry_after: float = 1.0,
        is_global: bool = False,
        times: int = 1,
    ) -> None:
        """Force the next ``times`` requests of route ``kind`` to get ``status``.

        ``kind`` is a route kind (see ``route_kinds``); ``<kind>_with_files`` matches
        only multipart requests, plain ``<kind>`` matches both.
        """
        self._rest.add_fault(
            self._checked_kind(kind),
            Fault(status, code, message, retry_after, is_global),
            times,
        )

    def delay_next(self, kind: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``kind`` only after ``seconds``."""
        self._rest.add_fault(self._checked_kind(kind), Fault(delay=seconds), times)

    def limit_old_message_edits(self, older_than: float | None) -> None:
        """Edits of messages older than ``older_than`` seconds fail with 400/30046."""
        self.knobs.old_message_edit_limit = older_than

    @property
    def route_kinds(self) -> frozenset[str]:
        return self._routes.kinds()

    def _checked_kind(self, kind: str) -> str:
        if kind not in self.route_kinds:
            raise ValueError(f"unknown route kind {kind!r}; known: {sorted(self.route_kinds)}")
        return kind

    # -- gateway control -----------------------------------------------------------------

    async def dispatch(self, event: str, data: JSON) -> None:
        """Send any gateway dispatch to the connected bot(s)."""
        await self.gateway.dispatch(event, data)
        await self.state.changed()

    async def request_reconnect(self) -> None:
        """Gateway op 7: the bot reconnects and RESUMEs (``fake.state.resumes``)."""
        await self.gateway.request_reconnect()

    # -- interaction injection -----------------------------------------------------------

    async def send_slash_command(
        self,
        command: str,
        options: Mapping[str, Any] | None = None,
        **where: Any,
    ) -> InjectedInteraction:
        """Dispatch a chat-input command interaction (type 2).

        ``command`` may be ``"name"``, ``"name sub"`` or ``"name group sub"``; it must
        have been synced. ``options`` maps option names to values: plain values, or
        ``AttachmentSpec`` / ``MemberSpec`` / ``UserSpec`` / ``RoleSpec`` / ``ChannelSpec``
        for resolved types. ``where`` (all optional): guild, channel (spec, thread, id or
        name), member (spec or username), app_permissions, attachment_size_limit, locale;
        see ``ContextResolver.resolve``.
        """
        ctx, data, builder = self._command(command, options or {}, None, where)
        channel_id = int(ctx.channel["id"])
        for attachment in builder.attachments:
            self._serve_attachment(channel_id, attachment)
        return await self._inject(INTERACTION_APPLICATION_COMMAND, ctx, data)

    async def send_autocomplete(
        self,
        command: str,
        options: Mapping[str, Any],
        focused: str,
        **where: Any,
    ) -> InjectedInteraction:
        """Dispatch an autocomplete interaction (type 4): the user is typing ``focused``
        (``options[focused]`` is the partial text) while filling ``command``. The bot answers
        with callback type 8 (``{"choices": [...]}``), checked as Discord checks it."""
        ctx, data, _ = self._command(command, options, focused, where)
        return await self._inject(INTERACTION_AUTOCOMPLETE, ctx, data)

    def _command(
        self,
        command: str,
        options: Mapping[str, Any],
        focused: str | None,
        where: Mapping[str, Any],
    ) -> tuple[InteractionContext, JSON, OptionBuilder]:
        """Where a chat-input command is used, and its interaction's ``data``: the synced
        command and its options as Discord sends them (with ``focused`` while typing)."""
        name, *path = command.split()
        ctx = self._where.resolve(**where)
        found = self.state.synced_command(name, ctx.guild.id)
        if found is None:
            raise LookupError(f"/{name} was never synced (synced: {self.state.commands})")
        schema, scope = found
        channel_id = int(ctx.channel["id"])
        builder = OptionBuilder(
            ctx.guild, lambda a: self._messages.cdn_urls(channel_id, a.id, a.filename)
        )
        data: JSON = {
            "id": schema["id"],
            "name": name,
            "type": 1,
            "options": builder.build(schema.get("options", []), path, options, focused),
        }
        if builder.resolved:
            data["resolved"] = builder.resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        return ctx, data, builder

    async def submit_modal(
        self,
        source: InjectedInteraction | None = None,
        values: Mapping[str, Any] | None = None,
        *,
        custom_id: str | None = None,
        **where: Any,
    ) -> InjectedInteraction:
        """Dispatch a modal submit (type 5) answering the modal ``source`` responded with.

        ``values`` maps input custom_ids to what the person gives: text for a text input, a
        list of ``AttachmentSpec`` for a file upload, an option's value for a radio group, a
        list of values for a checkbox group, a bool for a checkbox. Inputs left out are sent as
        the modal pre-filled them (`modals.py`). Without ``source`` pass the modal's
        ``custom_id``; text inputs are then sent as one action row each.
        """
        modal = source.modal if source is not None else None
        if source is not None and modal is None:
            raise ValueError(f"interaction {source.id} was not answered with a modal")
        where = {**self._where.where_of(source), **where}
        ctx = self._where.resolve(**where)
        if modal is None:
            if custom_id is None:
                raise ValueError("need a source interaction answered with a modal, or custom_id")
            data = rows_submit(custom_id, values or {})
        else:
            channel_id = int(ctx.channel["id"])
            answer = ModalAnswer(
                modal, values or {}, lambda a: self._messages.cdn_urls(channel_id, a.id, a.filename)
            )
            data = answer.data()
            if custom_id is not None:
                data["custom_id"] = custom_id
            for attachment in answer.attachments:
                self._serve_attachment(channel_id, attachment)
        return await self._inject(INTERACTION_MODAL_SUBMIT, ctx, data)

    async def click_button(
        self, message: RecordedMessage, custom_id: str, **where: Any
    ) -> InjectedInteraction:
        """Dispatch a button click (type 3, component_type 2) on a recorded message."""
        return await self._component(message, {"custom_id": custom_id, "component_type": 2}, where)

    async def choose_select(
        self,
        message: RecordedMessage,
        custom_id: str,
        values: Sequence[str],
        *,
        component_type: int = 3,
        **where: Any,
    ) -> InjectedInteraction:
        """Dispatch a select menu choice (type 3) on a recorded message."""
        data = {"custom_id": custom_id, "component_type": component_type, "values": list(values)}
        return await self._component(message, data, where)

    async def _component(
        self, message: RecordedMessage, data: JSON, where: dict[str, Any]
    ) -> InjectedInteraction:
        if not any(has_custom_id(c, data["custom_id"]) for c in message.components):
            raise ValueError(f"message {message.id} has no component {data['custom_id']!r}")
        where.setdefault("channel", message.channel_id)
        return await self._inject(
            INTERACTION_COMPONENT, self._where.resolve(**where), data, message
        )

    def _serve_attachment(self, channel_id: int, attachment: AttachmentSpec) -> None:
        self._messages.register_cdn_file(
            channel_id,
            attachment.id,
            attachment.filename,
            attachment.data,
            attachment.effective_content_type,
        )

    async def _inject(
        self,
        kind: int,
        ctx: InteractionContext,
        data: JSON,
        message: RecordedMessage | None = None,
    ) -> InjectedInteraction:
        payload = base_interaction(
            kind=kind, application_id=self.application_id, ctx=ctx, data=data
        )
        if message is not None:
            payload["message"] = message.data
        interaction = InjectedInteraction(self.state, payload)
        self.state.interactions[interaction.id] = interaction
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def post_user_message(
        self,
        content: str,
        *,
        channel: ChannelSpec | int | str | None = None,
        member: MemberSpec | str | None = None,
    ) -> RecordedMessage:
        """A message typed by a (non-bot) member; dispatched as MESSAGE_CREATE."""
        ctx = self._where.resolve(channel=channel, member=member)
        channel_id = int(ctx.channel["id"])
        message = self._messages.create(channel_id, RequestBody({"content": content}))
        message.data["author"] = ctx.member.user.payload()
        message.data["member"] = ctx.member.payload(with_user=False)
        await self.dispatch("MESSAGE_CREATE", message.data)
        return message
