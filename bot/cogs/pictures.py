"""`/timeline job:<id>`: the Gantt chart of a job's last render, drawn from its stored events.

The runner stores every render's timed progress events with its job (`jobs.events`, JSON), for
a finished render and for a failed one, so the chart can be drawn at any time afterwards. It is
drawn by matplotlib in a worker thread (`pipeline.timeline.draw_timeline` uses no global
state) into a temporary folder that is removed once the picture is sent.

A job is shown only in the server it was rendered in; an unknown job, one still rendering and
one with nothing to draw get a short ephemeral answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from pipeline.errors import ReelbotError
from pipeline.events import JobFailed, ProgressEvent, SceneEvent, event_from_dict
from pipeline.timeline import (
    TimelineChart,
    cached_marks,
    critical_path_lower_bound,
    draw_timeline,
    makespan,
)

from ..app import ReelBot
from ..job_option import job_choices
from ..store import Job, JobState
from ..text import plain

__all__ = ["PicturesCog", "setup", "stored_events", "timeline_summary"]

log = logging.getLogger(__name__)

Interaction = discord.Interaction[ReelBot]


class PicturesCog(commands.Cog):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot

    @app_commands.command(name="timeline", description="Show where a render's time went")
    @app_commands.describe(job="The job number (from /render's answer or /queue)")
    @app_commands.guild_only()
    async def timeline(self, interaction: Interaction, job: app_commands.Range[int, 1]) -> None:
        found = await self.bot.store.job_here(job, interaction.guild_id)
        if found.state is JobState.RUNNING:
            raise ReelbotError(f"job #{job} is rendering right now; ask again once it has finished")
        events = stored_events(found)
        if not any(isinstance(e, SceneEvent) for e in events):
            raise ReelbotError(f"job #{job} has no render to draw yet")
        # Drawing takes a moment: answer now, publicly (the chart is for the channel).
        await interaction.response.defer(thinking=True)
        filename = f"timeline-job-{found.id}.png"
        with tempfile.TemporaryDirectory(prefix="reelbot-timeline-") as folder:
            chart = await asyncio.to_thread(draw_timeline, events, Path(folder) / filename)
            await interaction.followup.send(
                timeline_summary(found, events, chart), file=discord.File(chart.path, filename)
            )

    @timeline.autocomplete("job")
    async def _drawable_job(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[int]]:
        jobs = [j for j in await self.bot.store.recent_jobs(100) if j.events]
        return job_choices(jobs, interaction, current)


def stored_events(job: Job) -> list[ProgressEvent]:
    """The events of the job's last render, as the runner stored them (none if unreadable)."""
    if not job.events:
        return []
    try:
        return [event_from_dict(item) for item in json.loads(job.events)]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("job %d: its stored events cannot be read (%s)", job.id, exc)
        return []


def timeline_summary(job: Job, events: Sequence[ProgressEvent], chart: TimelineChart) -> str:
    """One line under the chart: how long it took, what ran, what was reused, the bound."""
    title = plain(job.title)
    ran = sum(1 for bar in chart.bars if not bar.is_wait)
    reused = len(cached_marks(events))
    text = (
        f"**Timeline of job #{job.id}** ({title}): {makespan(events):.1f} s in all; "
        f"{ran} stage{'s' if ran != 1 else ''} run, {reused} reused from the cache."
    )
    bound = critical_path_lower_bound(events)
    if bound is not None:
        text += f" No schedule of these stage times could finish before {bound:.1f} s (dashed)."
    elif any(isinstance(e, JobFailed) for e in events):
        text += " The render failed: a bar that never ended runs to where it stopped."
    else:
        text += " The scenes were made for review; the clips were not joined in this run."
    return text


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(PicturesCog(cast(ReelBot, bot)))
