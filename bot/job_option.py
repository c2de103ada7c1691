"""The `job:` option the job commands share (/status, /cancel, /forget, /timeline): the jobs
offered while the number is typed. The job it names is found with `Store.job_here`, which
raises `JobNotFound` for a job that is not on this server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands

from .store import Job

__all__ = ["job_choices"]

MAX_CHOICES = 25  # Discord shows at most 25


def job_choices(
    jobs: Iterable[Job], interaction: discord.Interaction[Any], typed: str
) -> list[app_commands.Choice[int]]:
    """This server's jobs among `jobs` whose number starts with what is typed ("#12" too)."""
    prefix = typed.strip().lstrip("#")
    return [
        app_commands.Choice(name=f"#{j.id} {j.title} ({j.state.value})"[:100], value=j.id)
        for j in jobs
        if j.guild_id == interaction.guild_id and str(j.id).startswith(prefix)
    ][:MAX_CHOICES]
