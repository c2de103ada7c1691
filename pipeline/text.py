"""User text made safe for every place it goes: a terminal, an ffmpeg argument, an MP4 tag,
a speech engine's input, an HTTP request. One function, used everywhere text comes in.

A script file holding a raw control character is refused (it is probably not text at all);
what `clean_text` removes arrives through escapes (JSON's `\\u0000`, `\\u001b[31m`) or options.
"""

from __future__ import annotations

import re

__all__ = ["clean_text", "has_lone_surrogate"]

# Terminal escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ST), and the
# two-character ones (ESC and one more), in their 7-bit and 8-bit (C1) forms.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: window titles, links
    r"|\x1b[ -~]?"  # any other escape
)
# C0 and C1 controls, DEL, and lone surrogates (not characters: they cannot be encoded).
_UNWANTED = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """`text` on one line: escape sequences and control characters gone (a control character
    becomes a space, so the words around it stay apart), lone surrogates dropped, every run
    of white space one space, no space at either end.

    >>> clean_text("Red\\x1b[31m alert\\x00now \\ud800!")
    'Red alert now !'
    """
    text = _ESCAPES.sub("", text)
    text = _UNWANTED.sub(lambda m: "" if "\ud800" <= m.group() <= "\udfff" else " ", text)
    return _SPACES.sub(" ", text).strip()


def has_lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text`, or None."""
    match = re.search(r"[\ud800-\udfff]", text)
    return match.start() if match else None
