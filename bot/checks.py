"""Who may do what, and where: app-command checks as decorators, and the role rules the
features ask (`is_moderator`, `may_review`). The /render rate limits are counted in the store
(`bot/admission.py`).

A failed check raises `Refusal` (`bot/errors.py`) carrying the words the user reads; the
central error handler (`bot/app.py`) answers them ephemerally.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar, cast

import discord
from discord import app_commands

from .config import DiscordConfig
from .errors import RateLimited, Refusal
from .store import Job

if TYPE_CHECKING:
    from .app import ReelBot

__all__ = [
    "bot_can_post",
    "check_bot_can_post",
    "check_render_allowed",
    "check_render_rate_limit",
    "has_any_role",
    "is_moderator",
    "may_manage",
    "may_review",
    "render_allowed",
    "render_rate_limit",
]

T = TypeVar("T")


def _bot(interaction: discord.Interaction[Any]) -> ReelBot:
    return cast("ReelBot", interaction.client)


# ------------------------------------------------------------ roles and channels


def has_any_role(user: discord.abc.User | discord.Member, role_ids: Collection[int]) -> bool:
    roles = getattr(user, "roles", ())
    return any(role.id in role_ids for role in roles)


def is_moderator(user: discord.abc.User | discord.Member, config: DiscordConfig) -> bool:
    return bool(config.moderator_role_ids) and has_any_role(user, config.moderator_role_ids)


def may_manage(user: discord.abc.User | discord.Member, job: Job, config: DiscordConfig) -> bool:
    """Cancel it, make the bot forget it: the requester, or a moderator."""
    return user.id == job.user_id or is_moderator(user, config)


def may_review(user: discord.abc.User | discord.Member, job: Job, config: DiscordConfig) -> bool:
    """Regenerate, edit or approve its scenes: the requester, or a member with a reviewer role."""
    return user.id == job.user_id or has_any_role(user, config.reviewer_role_ids)


def _channel_allowed(interaction: discord.Interaction[Any], allowed: Collection[int]) -> bool:
    if interaction.channel_id in allowed:
        return True
    # A thread inside an allowed channel is allowed too.
    parent_id = getattr(interaction.channel, "parent_id", None)
    return parent_id is not None and parent_id in allowed


def render_allowed() -> Callable[[T], T]:
    """The [discord] allowlists: channels and roles (empty lists allow everyone)."""
    return app_commands.check(check_render_allowed)


async def check_render_allowed(interaction: discord.Interaction[Any]) -> bool:
    """`render_allowed` as a call, for another way to start a render (a button)."""
    config = _bot(interaction).settings.discord
    if config.allowed_channel_ids and not _channel_allowed(interaction, config.allowed_channel_ids):
        places = ", ".join(f"<#{c}>" for c in config.allowed_channel_ids)
        raise Refusal(f"Renders can't be started in this channel. Try {places}.")
    if config.allowed_role_ids and not has_any_role(interaction.user, config.allowed_role_ids):
        roles = ", ".join(f"<@&{r}>" for r in config.allowed_role_ids)
        raise Refusal(f"You need one of these roles to start a render: {roles}.")
    return True


def bot_can_post() -> Callable[[T], T]:
    """The bot must be able to post the progress message and the video where it is asked."""
    return app_commands.check(check_bot_can_post)


async def check_bot_can_post(interaction: discord.Interaction[Any]) -> bool:
    """`bot_can_post` as a call, for another way to start a render (a button)."""
    perms = interaction.app_permissions
    in_thread = isinstance(interaction.channel, discord.Thread)
    needed = {
        "Send Messages in Threads" if in_thread else "Send Messages": (
            perms.send_messages_in_threads if in_thread else perms.send_messages
        ),
        "Embed Links": perms.embed_links,
        "Attach Files": perms.attach_files,
        "Read Message History": perms.read_message_history,
    }
    missing = [name for name, granted in needed.items() if not granted]
    if missing:
        raise Refusal(
            "I can't post the progress and the video in this channel: I need the "
            f"{', '.join(missing)} permission{'s' if len(missing) > 1 else ''} here."
        )
    return True


# ------------------------------------------------------------ rate limits


def render_rate_limit() -> Callable[[T], T]:
    """The rate windows, peeked before the paste form opens or a file is downloaded. Only a
    courtesy: the render's admission checks them again, atomically (`bot/admission.py`)."""
    return app_commands.check(check_render_rate_limit)


async def check_render_rate_limit(interaction: discord.Interaction[Any]) -> bool:
    """`render_rate_limit` as a call, for another way to start a render (a button)."""
    admission = _bot(interaction).runner.admission
    try:
        await admission.peek(interaction.user.id, interaction.guild_id)
    except RateLimited as exc:
        raise Refusal(str(exc)) from None
    return True
