"""A job in its own words: who asked, when, with which settings, and what to do next. One
source for the progress message (`bot/progress_embed.py`) and `/status` (`bot/cogs/queue.py`),
so both say the same.

    Asked by @alice <t:…:R> · 9:16 · captions on · review · voice af_bella · music

What to do next depends on the state: Cancel while it is not over, approve the scenes while
it waits for review, Retry once it failed (with what to fix first, by the stage that failed),
Send to me once it is done.
"""

from __future__ import annotations

import json

from pipeline.errors import ReelbotError
from pipeline.events import JobFailed, Stage, event_from_dict

from .store import Job, JobOptions, JobState
from .text import plain

__all__ = ["asked_line", "failed_stage", "failure_hint", "next_step", "settings_words"]


def settings_words(options: JobOptions) -> str:
    """The settings the requester chose; what was left to the script is said so."""
    words = [options.aspect or "the script's aspect"]
    if options.captions is not None:
        words.append("captions on" if options.captions else "captions off")
    if options.review:
        words.append("review")
    if options.voice:
        words.append(f"voice {plain(options.voice, 60)}")
    if options.music:
        words.append("music")
    return " · ".join(words)


def asked_line(job: Job) -> str:
    """`Asked by <@user> <t:…:R> · settings` (Discord shows the time in the reader's zone)."""
    return f"Asked by <@{job.user_id}> <t:{int(job.created_at)}:R> · {settings_words(job.options)}"


def failure_hint(stage: Stage | None) -> str:
    """What the requester can do about a failure at `stage`."""
    again = "Then press 🔁 Retry: the scenes already made are reused."
    if stage is Stage.IMAGE:
        return (
            "The image service failed. If the message is about the API key or credit, the "
            f"bot's operator has to fix that; if it is busy or timed out, wait a little. {again}"
        )
    if stage is Stage.AUDIO:
        return (
            "The narration failed: the speech server may be down, or the voice is unknown. "
            f"Check the voice name, or ask the bot's operator to check the speech server. {again}"
        )
    if stage in (Stage.CLIP, Stage.JOIN):
        return (
            "ffmpeg failed while encoding the video; the bot's log has ffmpeg's own message. "
            "Press 🔁 Retry; if it keeps failing, tell the bot's operator."
        )
    return "Press 🔁 Retry when the cause is fixed: the scenes already made are reused."


def failed_stage(job: Job) -> Stage | None:
    """The stage the job's last run failed at, from its stored events (None: not known)."""
    if not job.events:
        return None
    try:
        events = [event_from_dict(item) for item in json.loads(job.events)]
    except (ValueError, TypeError, KeyError, ReelbotError):
        return None
    failed = next((e for e in reversed(events) if isinstance(e, JobFailed)), None)
    return None if failed is None else failed.stage


def next_step(job: Job) -> str:
    """What can be done with the job now, by its state."""
    if job.state is JobState.FAILED:
        return failure_hint(failed_stage(job))
    if job.state is JobState.REVIEW:
        return (
            "Approve each scene's image in the thread (or regenerate it); 🛑 Cancel on the "
            "progress message stops the job."
        )
    if job.state.active:
        return f"🛑 Cancel on the progress message (or `/cancel job:{job.id}`) stops it."
    if job.state is JobState.DONE:
        return "📩 Send to me on the progress message puts the video in your direct messages."
    return "Run /render again to make it anew: the scenes already made are reused."
