"""`/queue`, `/status job:<id>` and `/cancel job:<id>`: the render queue from Discord.

One queue serves every server the bot is in; a server sees its own jobs (with their place in
the whole queue) and only a count of the others'.
"""

from __future__ import annotations

from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from pipeline.errors import ReelbotError

from ..answers import answer
from ..app import ReelBot
from ..checks import is_moderator, may_manage
from ..errors import Refusal
from ..job_option import job_choices
from ..job_words import asked_line, next_step
from ..jobs import QueueEntry
from ..store import Job, JobState
from ..text import format_duration, plain, truncate

__all__ = ["QueueCog", "queue_embed", "setup", "status_embed"]

Interaction = discord.Interaction[ReelBot]
STATE_SYMBOLS = {
    JobState.QUEUED: "⏳",
    JobState.RUNNING: "🔄",
    JobState.REVIEW: "👀",
    JobState.DONE: "✅",
    JobState.FAILED: "❌",
    JobState.CANCELLED: "🚫",
}
MAX_LISTED = 15


class QueueCog(commands.Cog):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot

    @app_commands.command(name="queue", description="Show the render queue")
    @app_commands.guild_only()
    async def queue(self, interaction: Interaction) -> None:
        entries = await self.bot.runner.queue()
        await answer(interaction, embed=queue_embed(entries, interaction.guild_id))

    @app_commands.command(name="status", description="Show one render job")
    @app_commands.describe(job="The job number (from /render's answer or /queue)")
    @app_commands.guild_only()
    async def status(self, interaction: Interaction, job: app_commands.Range[int, 1]) -> None:
        found = await self.bot.store.job_here(job, interaction.guild_id)
        entry = next((e for e in await self.bot.runner.queue() if e.job.id == job), None)
        await answer(interaction, embed=status_embed(found, entry))

    @app_commands.command(name="cancel", description="Stop a queued or running render")
    @app_commands.describe(job="The job number (from /render's answer or /queue)")
    @app_commands.guild_only()
    async def cancel(self, interaction: Interaction, job: app_commands.Range[int, 1]) -> None:
        found = await self.bot.store.job_here(job, interaction.guild_id)
        user = interaction.user
        if not may_manage(user, found, self.bot.settings.discord):
            raise Refusal(f"Only the person who started job #{job} or a moderator can cancel it.")
        if not found.state.active:
            raise ReelbotError(f"job #{job} is already {found.state.value}")
        # Stopping a running render waits for its processes to be killed: defer first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        cancelled = await self.bot.runner.cancel(job, by=user.id)  # its message says so
        await answer(interaction, f"Cancelled job #{job} ({cancelled.title}).")

    @status.autocomplete("job")
    async def _any_job(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        return job_choices(await self.bot.store.recent_jobs(100), interaction, current)

    @cancel.autocomplete("job")
    async def _active_job(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        jobs = await self.bot.store.jobs_in([JobState.QUEUED, JobState.RUNNING, JobState.REVIEW])
        if not is_moderator(interaction.user, self.bot.settings.discord):
            jobs = [j for j in jobs if j.user_id == interaction.user.id]
        return job_choices(jobs, interaction, current)


def _place(entry: QueueEntry) -> str:
    if entry.position == 0:
        return f"rendering · about {format_duration(entry.estimate)} left"
    return f"#{entry.position} in line · done in about {format_duration(entry.estimate)}"


def queue_embed(entries: list[QueueEntry], guild_id: int | None) -> discord.Embed:
    """Position, owner, scene count, state and an estimate for this server's jobs."""
    here = [e for e in entries if e.job.guild_id == guild_id]
    elsewhere = len(entries) - len(here)
    embed = discord.Embed(title="Render queue", colour=discord.Colour.blurple())
    lines = [
        f"`#{e.job.id}` {STATE_SYMBOLS[e.job.state]} **{plain(e.job.title, 60)}**"
        f" · <@{e.job.user_id}> · {e.job.scene_count} scenes · {_place(e)}"
        for e in here[:MAX_LISTED]
    ]
    if len(here) > MAX_LISTED:
        lines.append(f"… and {len(here) - MAX_LISTED} more")
    if elsewhere:
        lines.append(f"Also {elsewhere} job{'s' if elsewhere != 1 else ''} from other servers.")
    embed.description = "\n".join(lines) if lines else "The queue is empty."
    return embed


def status_embed(job: Job, entry: QueueEntry | None) -> discord.Embed:
    """The job in its own words (`bot/job_words.py`): who asked, when, with which settings;
    where it is; on failure what went wrong; and what to do next."""
    embed = discord.Embed(
        title=f"Job #{job.id}: {plain(job.title)}",
        description=asked_line(job),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="State", value=f"{STATE_SYMBOLS[job.state]} {job.state.value}")
    embed.add_field(name="Scenes", value=str(job.scene_count))
    if entry is not None:
        embed.add_field(name="Place", value=_place(entry), inline=False)
    if job.error and job.state is JobState.FAILED:
        embed.add_field(name="What went wrong", value=truncate(job.error, 1000), inline=False)
    embed.add_field(name="What to do", value=next_step(job), inline=False)
    if job.progress_message_id is not None and job.guild_id is not None:
        url = (
            f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/"
            f"{job.progress_message_id}"
        )
        embed.add_field(name="Progress", value=f"[progress message]({url})", inline=False)
    return embed


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(QueueCog(cast(ReelBot, bot)))
