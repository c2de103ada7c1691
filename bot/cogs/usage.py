"""`/usage`: this server's paid images and renders, today and this month.

Counted from the store (`bot/admission.py`): the images are the paid image requests made
(regenerations included; an image reused from the cache is free), the renders are the
accepted /render jobs. Days and months are UTC. Everyone sees the server's totals and their
own numbers, with what is left of the daily budgets; a moderator also sees each person's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from ..admission import DAY, ImageUse, day_start, image_use, month_start
from ..answers import answer
from ..app import ReelBot
from ..checks import is_moderator
from ..config import RateLimitConfig
from ..store import Store

__all__ = ["PersonUsage", "UsageCog", "UsageReport", "setup", "usage_embed", "usage_report"]

Interaction = discord.Interaction[ReelBot]
MAX_PEOPLE = 20


@dataclass
class PersonUsage:
    user_id: int
    images_today: int = 0
    images_month: int = 0
    renders_today: int = 0
    renders_month: int = 0


@dataclass(frozen=True)
class UsageReport:
    now: float
    total: PersonUsage  # the whole server (user_id 0)
    people: list[PersonUsage]  # this month, most images first
    server_today: ImageUse  # what the server's daily budget counts now
    you_today: ImageUse  # what your daily budget counts now (across servers)
    limits: RateLimitConfig
    you: PersonUsage = field(default_factory=lambda: PersonUsage(0))


async def usage_report(
    store: Store, guild_id: int, user_id: int, limits: RateLimitConfig, now: float
) -> UsageReport:
    today, month = day_start(now), month_start(now)
    people: dict[int, PersonUsage] = defaultdict(lambda: PersonUsage(0))
    images = await store.fetch(
        "SELECT user_id, SUM(at >= ?), COUNT(*) FROM image_requests"
        " WHERE guild_id = ? AND at >= ? GROUP BY user_id",
        (today, guild_id, month),
    )
    for who, on_day, in_month in images:
        person = people[int(who)]
        person.images_today, person.images_month = int(on_day), int(in_month)
    renders = await store.fetch(
        "SELECT user_id, SUM(at >= ?), COUNT(*) FROM admissions"
        " WHERE kind = 'render' AND guild_id = ? AND at >= ? GROUP BY user_id",
        (today, guild_id, month),
    )
    for who, on_day, in_month in renders:
        person = people[int(who)]
        person.renders_today, person.renders_month = int(on_day), int(in_month)
    for who, person in people.items():
        person.user_id = who
    total = PersonUsage(
        0,
        sum(p.images_today for p in people.values()),
        sum(p.images_month for p in people.values()),
        sum(p.renders_today for p in people.values()),
        sum(p.renders_month for p in people.values()),
    )
    async with store.transaction() as db:  # one consistent read of both budgets
        server_today = await image_use(db, "guild_id", guild_id, now)
        you_today = await image_use(db, "user_id", user_id, now)
    ranked = sorted(people.values(), key=lambda p: (-p.images_month, -p.renders_month, p.user_id))
    return UsageReport(now, total, ranked, server_today, you_today, limits,
                       people.get(user_id, PersonUsage(user_id)))  # fmt: skip


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _line(images: int, renders: int) -> str:
    return f"🖼️ **{_plural(images, 'image')}** · 🎬 **{_plural(renders, 'render')}**"


def _left(budget: int, use: ImageUse, whose: str) -> str:
    if not budget:
        return f"no daily limit on {whose} images"
    left = max(0, budget - use.used)
    held = f"; {use.held:,} held by queued renders" if use.held else ""
    return f"{left:,} of {whose} {budget:,} images left today{held}"


def usage_embed(report: UsageReport, *, guild_name: str, moderator: bool) -> discord.Embed:
    limits = report.limits
    resets = int(day_start(report.now) + DAY)
    embed = discord.Embed(
        title=f"Usage in {discord.utils.escape_markdown(guild_name)[:200]}",
        description=(
            "Paid image requests (regenerations included; an image reused from the cache is "
            f"free) and renders started. Days are UTC: the next one starts <t:{resets}:R>."
        ),
        colour=discord.Colour.blurple(),
    )
    total, you = report.total, report.you
    embed.add_field(
        name="Today",
        value=f"{_line(total.images_today, total.renders_today)}\n"
        f"{_left(limits.images_per_day, report.server_today, 'its')}",
        inline=False,
    )
    embed.add_field(
        name="This month", value=_line(total.images_month, total.renders_month), inline=False
    )
    embed.add_field(
        name="You",
        value=(
            f"Today: {_line(you.images_today, you.renders_today)}\n"
            f"This month: {_line(you.images_month, you.renders_month)}\n"
            f"{_left(limits.images_per_user_per_day, report.you_today, 'your')}"
        ),
        inline=False,
    )
    if moderator:
        lines = [
            f"<@{p.user_id}> · {_plural(p.images_month, 'image')} ({p.images_today:,} today)"
            f" · {_plural(p.renders_month, 'render')} ({p.renders_today:,} today)"
            for p in report.people[:MAX_PEOPLE]
        ]
        if len(report.people) > MAX_PEOPLE:
            lines.append(f"… and {len(report.people) - MAX_PEOPLE} more")
        embed.add_field(
            name="By person, this month", value="\n".join(lines) or "Nobody yet.", inline=False
        )
    return embed


class UsageCog(commands.Cog):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Show this server's images and renders")
    @app_commands.guild_only()
    async def usage(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None  # guild_only
        runner = self.bot.runner
        report = await usage_report(self.bot.store, interaction.guild_id, interaction.user.id,
                                    self.bot.settings.rate_limit, runner.clock())  # fmt: skip
        guild = interaction.guild
        moderator = is_moderator(interaction.user, self.bot.settings.discord)
        embed = usage_embed(report, guild_name=guild.name if guild else "this server",
                            moderator=moderator)  # fmt: skip
        await answer(interaction, embed=embed)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(UsageCog(cast(ReelBot, bot)))
