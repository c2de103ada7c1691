"""The wording every message of the bot shares, said once: durations, sizes, counts, and a
person's text made safe to show.

    format_duration(75)     "1 min 15 s"       a clock: progress, queue, delivery
    duration_words(5400)    "90 minutes"       a wait, in a sentence: the refusals
    format_size(10 MiB)     "10 MB"            as Discord writes sizes
    plural(3, "scene")      "3 scenes"
    ordinal(2)              "2nd"
    truncate(text, 60)      cut to 60 characters, ending in "…"
    plain(title, 100)       markdown and mentions escaped, then cut (a title, a file name)
    sentence("the queue")   "The queue."
"""

from __future__ import annotations

import discord

__all__ = [
    "duration_words",
    "format_duration",
    "format_size",
    "ordinal",
    "plain",
    "plural",
    "sentence",
    "truncate",
]


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def duration_words(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} seconds"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours = seconds / 3600
    return f"{hours:.0f} hours" if hours >= 1.5 else "an hour"


def format_size(size: float) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
    return f"{max(1, round(size / 1024))} KB"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plain(text: str, limit: int = 200) -> str:
    """Someone's text (a title, a file name) in a message: its markdown and mentions shown as
    typed, never formatting or pinging, at most `limit` characters."""
    return truncate(discord.utils.escape_mentions(discord.utils.escape_markdown(text)), limit)


def sentence(text: str) -> str:
    """An error's words as a sentence: a capital first letter and a full stop."""
    text = text.strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
