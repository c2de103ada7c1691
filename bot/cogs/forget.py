"""`/forget job:<n>`: remove one job from the bot now, for its requester or a moderator.

The job is cancelled if it is still queued, rendering or waiting for review; then its script,
review history, uploaded music, kept video and cached artefacts are removed
(`bot/retention.py`), the images and video the bot posted for it are deleted or blanked, and
its progress message says it was forgotten (`bot/forgotten.py`). What it used stays counted in
`/usage` (that record holds no script text).
"""

from __future__ import annotations

from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from ..answers import answer
from ..app import ReelBot
from ..checks import is_moderator, may_manage
from ..errors import Refusal
from ..job_option import job_choices
from ..retention import ForgottenJob
from ..text import plain

__all__ = ["ForgetCog", "forget_summary", "setup"]

Interaction = discord.Interaction[ReelBot]


class ForgetCog(commands.Cog):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="forget", description="Delete a job's script, images and video from the bot"
    )
    @app_commands.describe(job="The job number (from /render's answer or /queue)")
    @app_commands.guild_only()
    async def forget(self, interaction: Interaction, job: app_commands.Range[int, 1]) -> None:
        found = await self.bot.store.job_here(job, interaction.guild_id)
        user = interaction.user
        if not may_manage(user, found, self.bot.settings.discord):
            raise Refusal(
                f"Only the person who started job #{job} or a moderator can make me forget it."
            )
        # Stopping a render and deleting its posts takes a moment: defer first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        forgotten = await self.bot.runner.forget(job, by=user.id)
        await answer(interaction, forget_summary(forgotten))

    @forget.autocomplete("job")
    async def _own_job(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        moderator = is_moderator(interaction.user, self.bot.settings.discord)
        jobs = [j for j in await self.bot.store.recent_jobs(100)
                if moderator or j.user_id == interaction.user.id]  # fmt: skip
        return job_choices(jobs, interaction, current)


def forget_summary(forgotten: ForgottenJob) -> str:
    """What /forget answers: what is gone, in a sentence or two."""
    job = forgotten.job
    title = plain(job.title, 100)
    files = len(forgotten.removed)
    text = (
        f"Forgot job #{job.id} ({title}): its script, review history and {files} "
        f"file{'s' if files != 1 else ''} are gone from the bot"
    )
    images = sum(p.kind == "image" for p in forgotten.posts)
    videos = sum(p.kind == "video" for p in forgotten.posts)
    posts = []
    if images:
        posts.append(f"{images} image post{'s' if images != 1 else ''} deleted")
    if videos:
        posts.append(f"{'its video' if videos == 1 else f'{videos} videos'} taken down")
    if posts:
        text += "; " + " and ".join(posts)
    return text + ". What it used still counts in /usage."


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ForgetCog(cast(ReelBot, bot)))
