"""`/usage`: this server's paid images and renders, today and this month.

Counted from the store (`bot/usage.py`): the images are the paid image requests made
(regenerations included; an image reused from the cache is free), the renders are the
accepted /render jobs. Days and months are UTC. Everyone sees the server's totals and their
own numbers, with what is left of the daily budgets; a moderator also sees each person's.
"""

from __future__ import annotations

from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from ..answers import answer
from ..app import ReelBot
from ..checks import is_moderator
from ..text import plain, plural
from ..usage import DAY, ImageUse, UsageReport, day_start, usage_report

__all__ = ["UsageCog", "setup", "usage_embed"]

Interaction = discord.Interaction[ReelBot]
MAX_PEOPLE = 20


def _line(images: int, renders: int) -> str:
    return f"🖼️ **{plural(images, 'image')}** · 🎬 **{plural(renders, 'render')}**"


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
        title=f"Usage in {plain(guild_name)}",
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
            f"<@{p.user_id}> · {plural(p.images_month, 'image')} ({p.images_today:,} today)"
            f" · {plural(p.renders_month, 'render')} ({p.renders_today:,} today)"
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
