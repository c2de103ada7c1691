"""ReelBot: start-up (the features' cogs, command sync, the job runner), shut-down, and the one
central error handler for app commands, buttons and modals.

Everything it needs (settings, store, runner, presenters) is made by `bot/__main__.py` and
passed in; nothing here reads the environment or opens a connection of its own. It names no
feature's pieces: each cog registers its own commands, buttons and listeners when it loads.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from pipeline.errors import ReelbotError, ScriptError

from .answers import answer
from .config import BotSettings
from .errors import Refusal
from .jobs import JobRunner
from .presenter import Presenters
from .store import Store
from .text import sentence

__all__ = ["EXTENSIONS", "GENERIC_FAILURE", "ReelBot", "bot_intents", "user_message"]

log = logging.getLogger(__name__)

# One cog per feature (bot/cogs/): its commands, its buttons, its modals.
EXTENSIONS = (
    "bot.cogs.render",
    "bot.cogs.review",
    "bot.cogs.job_buttons",
    "bot.cogs.queue",
    "bot.cogs.pictures",
    "bot.cogs.usage",
    "bot.cogs.forget",
    "bot.cogs.draft",
    "bot.cogs.settings",
)

GENERIC_FAILURE = (
    "Something went wrong on my side while doing that. It has been logged; "
    "please try again in a moment."
)


def bot_intents() -> discord.Intents:
    """No privileged intent is needed. `guilds` fills the channel, thread and role cache
    (allowlists, opening threads); interactions carry their member, and the bot never reads
    messages, so neither `members` nor `message_content` (nor even `guild_messages`)."""
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


class ReelBot(commands.Bot):
    def __init__(
        self,
        *,
        settings: BotSettings,
        store: Store,
        runner: JobRunner,
        presenters: Presenters,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=bot_intents(),
            help_command=None,
            # Nothing the bot posts pings anyone unless a message allows it explicitly
            # (the delivery mentions its requester): script text may contain @everyone.
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.settings = settings
        self.store = store
        self.runner = runner
        self.presenters = presenters
        self._stopping = False
        presenters.bind(self)
        self.tree.error(self.on_app_command_error)

    # ------------------------------------------------------------ life cycle

    async def setup_hook(self) -> None:
        for extension in EXTENSIONS:  # each registers its own buttons (cog_load)
            await self.load_extension(extension)
        await self.sync_commands()
        # Jobs left queued or running by the last run resume now; their messages say "queued"
        # again at once (edited over REST, which works before the gateway is connected).
        await self.runner.start()

    async def sync_commands(self) -> None:
        guild_ids = self.settings.discord.guild_ids
        if not guild_ids:
            synced = await self.tree.sync()
            log.info("synced %d commands globally (may take a while to appear)", len(synced))
            return
        for guild_id in guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %d", len(synced), guild_id)

    async def on_ready(self) -> None:
        log.info("connected as %s to %d guilds", self.user, len(self.guilds))

    async def close(self) -> None:
        if not self._stopping:
            self._stopping = True
            if self.user is not None:  # it had logged in (else the start failed: said once)
                log.info("shutting down: running renders go back to the queue")
            await self.runner.close()
            await self.presenters.close()
        await super().close()

    # ------------------------------------------------------------ errors

    async def on_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        await self.report_error(interaction, error)

    async def report_error(self, interaction: discord.Interaction[Any], error: Exception) -> None:
        """Known errors: a short ephemeral answer. Unknown ones: logged in full, and the user
        gets a short generic message. Never a traceback to users. For app commands (the
        tree's error handler), and for the buttons and modals, which call it themselves."""
        cause: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            cause = error.original
        message = user_message(cause)
        if message is None:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("/%s (interaction %s) failed", command, interaction.id, exc_info=cause)
            message = GENERIC_FAILURE
        try:
            await answer(interaction, message)
        except discord.HTTPException as exc:
            log.warning("could not tell the user about an error (%s): %s", exc, message)


def user_message(error: BaseException) -> str | None:
    """The words for a known error; None for an unknown one (a bug to log)."""
    if isinstance(error, ScriptError):
        return f"That script can't be rendered. {sentence(str(error))}"
    if isinstance(error, ReelbotError | Refusal):
        return sentence(str(error))
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in a server, not in direct messages."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"This value can't be used for that option: {str(error.value)[:100]}"
    return None
