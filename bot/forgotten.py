"""What a forgotten job's messages say (`/forget`, or `[storage] keep_days`), drawn from the
forgotten job alone; `Presenters.forgotten` (bot/presenter.py) edits and deletes them.

    progress message(s)    → "Job #12 · forgotten" (no title, scenes, thumbnail or buttons)
    /forget only:
      scene images, replaced versions, storyboards (the thread)  → deleted
      the video reply(ies), failure notices                       → blanked: attachment removed,
                                                                    text says it was forgotten

After keep_days the bot removes only its own copies (see `bot/retention.py`); what it posted
stays in Discord, where the server's own retention applies, and the progress message says so.
"""

from __future__ import annotations

import discord

from .retention import ForgottenJob

__all__ = ["forgotten_embed", "forgotten_note"]


def forgotten_embed(forgotten: ForgottenJob) -> discord.Embed:
    job_id = forgotten.job.id
    if forgotten.asked_by is not None:
        text = (
            f"Forgotten at the request of <@{forgotten.asked_by}>: the bot no longer keeps this "
            "job's script, images or video, and has deleted the images and video it posted."
        )
    else:
        text = (
            f"Forgotten: the bot keeps a job's script and files for {forgotten.keep_days} days "
            "after it ends. What was posted here stays; its buttons no longer work."
        )
    embed = discord.Embed(
        title=f"Job #{job_id} · forgotten", description=text, colour=discord.Colour.dark_grey()
    )
    embed.set_footer(text=f"job #{job_id} · forgotten")
    return embed


def forgotten_note(forgotten: ForgottenJob) -> str:
    """What a blanked video or notice says."""
    return (
        f"Job #{forgotten.job.id} was forgotten at the request of <@{forgotten.asked_by}>: "
        "its video is no longer here."
    )
