"""Find the narration's words in what a synthesizer reports it spoke, to time each word.

A synthesizer reports its own units with their times: Piper its phonemes, Kokoro-FastAPI the
words as it normalised them ("200" may come back as "two hundred"). Both sides are turned into
comparable keys (`keys` for the narration's words, `pieces` for the spoken units) and matched
character by character (difflib), so a unit merged, split or spelled differently only blurs
the words around it. A word starts at the time of the spoken unit its first matched character
falls in; a word with nothing matched starts right after the word before it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from .base import WordMark

__all__ = ["TextWord", "align_words", "letters_key", "text_words"]

# Ideographs and kana are words of their own (written without spaces).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


@dataclass(frozen=True)
class TextWord:
    start: int  # index in the narration
    text: str


def text_words(text: str) -> list[TextWord]:
    """The narration's words (runs without spaces, or one CJK character) that can be spoken:
    holding at least one letter or digit."""
    return [
        TextWord(m.start(), m.group())
        for m in _WORD.finditer(text)
        if any(c.isalnum() for c in m.group())
    ]


def letters_key(text: str) -> str:
    """Letters and digits only, case-folded: how a written word is compared."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())


def align_words(
    words: Sequence[TextWord], keys: Sequence[str], pieces: Sequence[tuple[str, float]]
) -> list[WordMark]:
    """Each word's onset: `keys[i]` is word i as comparable text, `pieces` the spoken units
    (comparable text, start in seconds) in order. Onsets never go backwards."""
    if len(words) != len(keys):
        raise ValueError("one key per word")
    spoken = "".join(key for key, _ in pieces)
    if not words or not spoken:
        return []
    # The spoken unit (index into pieces) each character of `spoken` belongs to.
    unit_of: list[int] = []
    for i, (key, _) in enumerate(pieces):
        unit_of.extend([i] * len(key))
    written = "".join(keys)
    matched: dict[int, int] = {}  # character of `written` → character of `spoken`
    matcher = difflib.SequenceMatcher(None, written, spoken, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            matched[a + k] = b + k

    marks: list[WordMark] = []
    offset = 0  # where word i's characters begin in `written`
    next_free = 0  # the first character of `spoken` no earlier word used
    last = 0.0
    for word, key in zip(words, keys, strict=True):
        hits = [(k, matched[offset + k]) for k in range(len(key)) if offset + k in matched]
        if hits:
            k, b = hits[0]
            # Unmatched leading characters were spoken just before the first matched one.
            position = max(b - k, next_free)
            next_free = max(next_free, hits[-1][1] + 1)
        else:
            position = next_free
        offset += len(key)
        if position >= len(spoken):
            position = len(spoken) - 1
        seconds = max(last, pieces[unit_of[position]][1])
        marks.append(WordMark(word.start, len(word.text), seconds))
        last = seconds
    return marks
