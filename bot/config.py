"""The bot's settings: the pipeline's, plus [discord], [queue], [rate_limit] and [redis]."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr

from pipeline.config import ConfigSection, Secrets, Settings

__all__ = [
    "BOT_SECTIONS",
    "BotSecrets",
    "BotSettings",
    "DiscordConfig",
    "QueueConfig",
    "RateLimitConfig",
    "RedisConfig",
]


class DiscordConfig(ConfigSection):
    # Guilds to sync the slash commands to at start (instant); empty means a global sync.
    guild_ids: tuple[int, ...] = ()
    # REST base; point it at a REST proxy if you run one.
    api_base: str = "https://discord.com/api/v10"
    # Gateway URL; empty means Discord's default.
    gateway_url: str = ""
    # Who may render: channel and role allowlists (empty = everyone, everywhere).
    allowed_channel_ids: tuple[int, ...] = ()
    allowed_role_ids: tuple[int, ...] = ()
    # Roles that may cancel anyone's job; roles that may review anyone's scenes.
    moderator_role_ids: tuple[int, ...] = ()
    reviewer_role_ids: tuple[int, ...] = ()
    # Progress edits are coalesced to at most one per this many seconds per message.
    edit_interval: float = Field(2.0, ge=0.2)
    # A progress message older than this is replaced by a new one: a message older than an
    # hour may be edited only so often (error 30046, "Maximum number of edits to messages
    # older than 1 hour reached").
    message_max_age: float = Field(50 * 60, ge=10)
    # Largest script attachment accepted (checked before downloading).
    max_attachment_bytes: int = Field(256 * 1024, ge=1024)
    # Largest music attachment accepted (`/render music:`), checked before downloading.
    max_music_bytes: int = Field(25 * 1024 * 1024, ge=1024)


class QueueConfig(ConfigSection):
    # Renders at once: a second keeps the image slot busy while the first one finishes (its
    # last clips, join, sound pass, upload); waiting work is served in job order.
    max_concurrent_renders: int = Field(2, ge=1)
    per_user_limit: int = Field(3, ge=1)
    max_total: int = Field(20, ge=1)
    # Seconds one run of a job may take (render and delivery); a run past it is stopped and
    # fails saying so. Waiting for review is not running.
    job_timeout: float = Field(2 * 3600.0, gt=0)
    # Time estimates use the median of each stage's latest this-many measured samples.
    timing_samples: int = Field(20, ge=1, le=1000)
    # "local": renders run inside the bot (SQLite, nothing else to run). "arq": `reelbot
    # worker` processes run them, on any host that reaches `[redis] url` and shares
    # `[storage] data_dir` (docs/scale-out.md).
    backend: Literal["local", "arq"] = "local"


class RedisConfig(ConfigSection):
    """Redis, for `[queue] backend = "arq"` (ignored otherwise)."""

    url: str = "redis://127.0.0.1:6379/0"
    # Seconds a lease lasts unless renewed: a running job's heartbeat (its job is given to
    # another worker this long after its worker stops answering) and an image slot's.
    lease_seconds: float = Field(15.0, ge=1)
    # Seconds a worker (or the bot) keeps trying to reach Redis before it gives up.
    connect_timeout: float = Field(60.0, ge=0)


class RateLimitConfig(ConfigSection):
    # Accepted /render jobs allowed per user and per guild within `window` seconds (a refused
    # /render, e.g. a script with a typo, does not count).
    per_user: int = Field(5, ge=1)
    per_guild: int = Field(30, ge=1)
    window: float = Field(3600.0, gt=0)
    # Paid image requests (regenerations included; images found in the cache are free) per
    # server and per person, per day (UTC); 0 means no limit.
    images_per_day: int = Field(1000, ge=0)
    images_per_user_per_day: int = Field(200, ge=0)


class BotSecrets(Secrets):
    discord_token: SecretStr | None = Field(None, validation_alias=AliasChoices("DISCORD_TOKEN"))


class BotSettings(Settings):
    """The pipeline's settings (and their TOML/environment sources), plus the bot's sections."""

    discord: DiscordConfig = DiscordConfig()
    queue: QueueConfig = QueueConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    redis: RedisConfig = RedisConfig()
    secrets: BotSecrets = Field(default_factory=BotSecrets, exclude=True)


# The tables the bot adds to the config file (bot/plugin.py declares them to `reelbot`).
BOT_SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in BotSettings.model_fields.items()
    if name not in Settings.model_fields and isinstance(field.annotation, type)
}
