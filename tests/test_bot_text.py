"""The words the bot's messages share (`bot/text.py`)."""

from __future__ import annotations

from bot.text import format_size

MIB = 1024 * 1024


def test_sizes_read_like_discords() -> None:
    assert format_size(10 * MIB) == "10 MB"
    assert format_size(25.5 * MIB) == "25.5 MB"
    assert format_size(120_000) == "117 KB"
