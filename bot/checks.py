"""Who may do what: app-command checks as decorators, and the /render rate limits.

A failed check raises `Refusal` (an `app_commands.CheckFailure`) carrying the words the user
reads; the central error handler (`bot/app.py`) answers them ephemerally.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Hashable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import discord
from discord import app_commands

from .config import DiscordConfig, RateLimitConfig

if TYPE_CHECKING:
    from .app import ReelBot

__all__ = [
    "RateLimited",
    "Refusal",
    "RenderRateLimits",
    "SlidingWindow",
    "bot_can_post",
    "has_any_role",
    "is_moderator",
    "render_allowed",
    "render_rate_limit",
]

T = TypeVar("T")
Clock = Callable[[], float]


class Refusal(app_commands.CheckFailure):
    """A check said no; `str(refusal)` is the answer for the user."""


class RateLimited(Refusal):
    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


def _bot(interaction: discord.Interaction[Any]) -> ReelBot:
    return cast("ReelBot", interaction.client)


# ------------------------------------------------------------ roles and channels


def has_any_role(user: discord.abc.User | discord.Member, role_ids: Collection[int]) -> bool:
    roles = getattr(user, "roles", ())
    return any(role.id in role_ids for role in roles)


def is_moderator(user: discord.abc.User | discord.Member, config: DiscordConfig) -> bool:
    return bool(config.moderator_role_ids) and has_any_role(user, config.moderator_role_ids)


def _channel_allowed(interaction: discord.Interaction[Any], allowed: Collection[int]) -> bool:
    if interaction.channel_id in allowed:
        return True
    # A thread inside an allowed channel is allowed too.
    parent_id = getattr(interaction.channel, "parent_id", None)
    return parent_id is not None and parent_id in allowed


def render_allowed() -> Callable[[T], T]:
    """The [discord] allowlists: channels and roles (empty lists allow everyone)."""

    async def predicate(interaction: discord.Interaction[Any]) -> bool:
        config = _bot(interaction).settings.discord
        if config.allowed_channel_ids and not _channel_allowed(
            interaction, config.allowed_channel_ids
        ):
            places = ", ".join(f"<#{c}>" for c in config.allowed_channel_ids)
            raise Refusal(f"Renders can't be started in this channel. Try {places}.")
        if config.allowed_role_ids and not has_any_role(interaction.user, config.allowed_role_ids):
            roles = ", ".join(f"<@&{r}>" for r in config.allowed_role_ids)
            raise Refusal(f"You need one of these roles to start a render: {roles}.")
        return True

    return app_commands.check(predicate)


def bot_can_post() -> Callable[[T], T]:
    """The bot must be able to post the progress message and the video where it is asked."""

    async def predicate(interaction: discord.Interaction[Any]) -> bool:
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

    return app_commands.check(predicate)


# ------------------------------------------------------------ rate limits


class SlidingWindow:
    """At most `limit` hits per key within any `window` seconds."""

    def __init__(self, limit: int, window: float, *, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may hit again; 0 if it may now."""
        hits = self._prune(key)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - self._clock())

    def hit(self, key: Hashable) -> None:
        if len(self._hits) > 1000:  # forget idle keys now and then
            for idle in [k for k in self._hits if not self._prune(k)]:
                del self._hits[idle]
        self._hits.setdefault(key, deque()).append(self._clock())

    def _prune(self, key: Hashable) -> deque[float]:
        hits = self._hits.get(key, deque())
        horizon = self._clock() - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        return hits


class RenderRateLimits:
    """[rate_limit]: /render per user and per guild. Only accepted renders are counted (a
    refused script or a full queue costs nothing), so the check peeks and the command
    records once the job is queued."""

    def __init__(self, config: RateLimitConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.users = SlidingWindow(config.per_user, config.window, clock=clock)
        self.guilds = SlidingWindow(config.per_guild, config.window, clock=clock)

    def check(self, user_id: int, guild_id: int | None) -> None:
        wait_user = self.users.retry_after(user_id)
        wait_guild = self.guilds.retry_after(guild_id) if guild_id is not None else 0.0
        if wait_user <= 0 and wait_guild <= 0:
            return
        window = _duration(self.config.window)
        if wait_user >= wait_guild:
            why = f"You have started {self.config.per_user} renders in the last {window}"
            wait = wait_user
        else:
            why = f"This server has started {self.config.per_guild} renders in the last {window}"
            wait = wait_guild
        when = int(time.time() + wait) + 1
        raise RateLimited(
            f"{why}, the limit. You can start another in about {_duration(wait)} (<t:{when}:t>).",
            wait,
        )

    def record(self, user_id: int, guild_id: int | None) -> None:
        self.users.hit(user_id)
        if guild_id is not None:
            self.guilds.hit(guild_id)


def render_rate_limit() -> Callable[[T], T]:
    async def predicate(interaction: discord.Interaction[Any]) -> bool:
        _bot(interaction).render_limits.check(interaction.user.id, interaction.guild_id)
        return True

    return app_commands.check(predicate)


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} seconds"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours = seconds / 3600
    return f"{hours:.0f} hours" if hours >= 1.5 else "an hour"
