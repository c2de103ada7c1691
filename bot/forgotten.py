"""What a forgotten job's messages say (`/forget`, or `[storage] keep_days`).

    progress message(s)    → "Job #12 · forgotten" (no title, scenes, thumbnail or buttons)
    /forget only:
      scene images, replaced versions, storyboards (the thread)  → deleted
      the video reply(ies), failure notices                       → blanked: attachment removed,
                                                                    text says it was forgotten

After keep_days the bot removes only its own copies (see `bot/retention.py`); what it posted
stays in Discord, where the server's own retention applies, and the progress message says so.
A message someone already deleted is skipped; any other failure is logged and the rest go on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import discord

from .retention import ForgottenJob, PostedMessage
from .store import Job

__all__ = ["forgotten_embed", "forgotten_note", "show_forgotten"]

log = logging.getLogger(__name__)


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


async def show_forgotten(client: discord.Client, forgotten: ForgottenJob) -> None:
    job = forgotten.job
    embed = forgotten_embed(forgotten)
    note = forgotten_note(forgotten)
    for post in forgotten.posts:
        if post.kind == "progress":
            act: Change = lambda m: m.edit(embed=embed, view=None)  # noqa: E731
        elif forgotten.asked_by is None:
            continue
        elif post.kind == "image":
            act = lambda m: m.delete()  # noqa: E731
        else:  # a video, a notice
            act = lambda m: m.edit(content=note, embeds=[], attachments=[])  # noqa: E731
        await _change(client, job, post, act)


Change = Callable[[discord.PartialMessage], Awaitable[object]]


async def _change(client: discord.Client, job: Job, post: PostedMessage, act: Change) -> None:
    channel = client.get_partial_messageable(post.channel_id, guild_id=job.guild_id)
    try:
        await act(channel.get_partial_message(post.message_id))
    except discord.NotFound:
        pass  # someone deleted it already
    except discord.HTTPException as exc:
        log.warning("could not change message %d of forgotten job %d: %s",
                    post.message_id, job.id, exc)  # fmt: skip
