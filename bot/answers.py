"""Answering an interaction on the channel that still works.

Like Red's tree: respond if the interaction is not answered yet, follow up if it is, and when
its token has expired (15 minutes) or Discord forgot it, say it in the channel instead,
mentioning the person. An answer is never silently dropped.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

__all__ = ["answer", "mention_only"]

log = logging.getLogger(__name__)

# Codes meaning "this interaction's token no longer works".
_EXPIRED_CODES = frozenset({10015, 10062, 50027})  # unknown webhook/interaction, bad token


async def answer(
    interaction: discord.Interaction[Any],
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    ephemeral: bool = True,
) -> None:
    """Tell the user `content` (and/or `embed`), ephemerally by default."""
    extra: dict[str, Any] = {}
    if embed is not None:
        extra["embed"] = embed
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(content, ephemeral=ephemeral, **extra)
        else:
            await interaction.followup.send(content or "", ephemeral=ephemeral, **extra)
        return
    except discord.HTTPException as exc:
        if exc.code not in _EXPIRED_CODES:
            raise
        log.info("interaction %s expired (%s); answering in the channel", interaction.id, exc.code)
    await _answer_in_channel(interaction, content, extra)


async def _answer_in_channel(
    interaction: discord.Interaction[Any], content: str | None, extra: dict[str, Any]
) -> None:
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        log.warning("cannot answer interaction %s: no channel to post in", interaction.id)
        return
    user = interaction.user
    text = f"{user.mention} {content}" if content else user.mention
    await channel.send(text, allowed_mentions=mention_only(user), **extra)


def mention_only(user: discord.abc.Snowflake) -> discord.AllowedMentions:
    """Ping this one user and nobody else (not roles, not @everyone from script text)."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[user], replied_user=False)
