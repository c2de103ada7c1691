"""Burned-in captions: the narration cut into short phrases, timed to the speech, written as
an ASS subtitle file that ffmpeg's `ass` filter (libass) draws onto the scene's clip.

Timing comes from the audio itself, never from a guess:

- espeak-ng reports where every word starts (libespeak-ng word events, in samples); a phrase
  is shown from its first word's onset until the next phrase's first word starts, the last
  one until the narration ends.
- Other speech providers give no word positions: the span between the first and the last
  sound (ffmpeg `silencedetect` on the WAV) is shared among the phrases in proportion to
  their spoken length (letters and digits; a CJK character counts as three; clause and
  sentence ends add a pause).

User text can never become an ASS override: `{`/`}` are escaped, a backslash is followed by
a word joiner (so `\\N`, `\\n`, `\\h` stay literal) and line breaks become spaces.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .aspect import Aspect, Size
from .config import CaptionsConfig
from .proc import run_program
from .tts.base import WordMark

__all__ = [
    "Cue",
    "Phrase",
    "ass_document",
    "captions_wanted",
    "cues_from_words",
    "cues_proportional",
    "escape_ass_text",
    "font_size",
    "parse_ass_events",
    "speech_span",
    "split_phrases",
]

# Ideographs, kana and CJK compatibility ideographs: written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}][^\s{_CJK}]*|[^\s{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_CLOSERS = "\"'”’»)]}」』）"
_CLAUSE_END = ",;:—–、，；："
_SENTENCE_END = ".!?…。！？"
WORD_JOINER = "\u2060"
# Pause weights for proportional timing, in "letters".
_CLAUSE_PAUSE = 3
_SENTENCE_PAUSE = 6


@dataclass(frozen=True)
class Phrase:
    """A few words of the narration, shown together: `text` is narration[start:end]."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    cjk: bool


# ------------------------------------------------------------------ phrases


def captions_wanted(config: CaptionsConfig, aspect: Aspect) -> bool:
    if config.enabled == "auto":
        return aspect is Aspect.PORTRAIT
    return config.enabled


def split_phrases(text: str, *, max_words: int, max_chars: int) -> list[Phrase]:
    """Cut `text` into phrases of at most `max_words` words and about `max_chars` columns
    (a wide character counts two), breaking after punctuation first and keeping the phrases
    of a clause about the same length. A single longer word is a phrase of its own."""
    tokens: list[_Token] = []
    loose: _Token | None = None  # leading symbols ("— well") go with the word after them
    for match in _TOKEN.finditer(text):
        token = _Token(match.start(), match.end(), bool(_CJK_CHAR.match(match.group())))
        if not any(c.isalnum() for c in match.group()):  # symbols only: never a phrase alone
            if tokens:
                tokens[-1] = _Token(tokens[-1].start, token.end, tokens[-1].cjk)
            elif loose is None:
                loose = token
            continue
        if loose is not None:
            token, loose = _Token(loose.start, token.end, token.cjk), None
        tokens.append(token)
    if loose is not None:
        tokens.append(loose)
    phrases: list[Phrase] = []
    for clause in _clauses(text, tokens):
        for group in _pack(text, clause, max_words, max_chars):
            start, end = group[0].start, group[-1].end
            phrases.append(Phrase(" ".join(text[start:end].split()), start, end))
    return phrases


def _clauses(text: str, tokens: list[_Token]) -> list[list[_Token]]:
    clauses: list[list[_Token]] = [[]]
    for token in tokens:
        clauses[-1].append(token)
        ending = _ending(text[token.start : token.end])
        # "Well, ..." - a one-word clause stays with the words after it.
        if ending and (ending in _SENTENCE_END or len(clauses[-1]) > 1):
            clauses.append([])
    return [c for c in clauses if c]


def _ending(word: str) -> str:
    """The clause or sentence punctuation `word` ends with ("" if none)."""
    stripped = word.rstrip(_CLOSERS)
    if stripped and stripped[-1] in _SENTENCE_END + _CLAUSE_END:
        return stripped[-1]
    return ""


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pack(text: str, clause: list[_Token], max_words: int, max_chars: int) -> list[list[_Token]]:
    def width(group: Sequence[_Token]) -> int:
        return _width(" ".join(text[group[0].start : group[-1].end].split())) if group else 0

    def words(group: Sequence[_Token]) -> int:
        return sum(not t.cjk for t in group) + math.ceil(sum(t.cjk for t in group) / 3)

    def fits(group: Sequence[_Token]) -> bool:
        return words(group) <= max_words and width(group) <= max_chars

    wanted = max(1, math.ceil(words(clause) / max_words), math.ceil(width(clause) / max_chars))
    groups: list[list[_Token]] = []
    i = 0
    while i < len(clause):
        # Aim at an equal share of what is left, so "4 + 1" words become "3 + 2".
        target = width(clause[i:]) / max(1, wanted - len(groups))
        group = [clause[i]]
        i += 1
        while i < len(clause) and fits([*group, clause[i]]):
            grown = width([*group, clause[i]])
            if grown - _width(text[clause[i].start : clause[i].end]) / 2 > target:
                break
            group.append(clause[i])
            i += 1
        groups.append(group)
    return groups


# ------------------------------------------------------------------ timing


def cues_from_words(
    phrases: Sequence[Phrase], words: Sequence[WordMark], audio_seconds: float
) -> list[Cue]:
    """Each phrase from its first word's onset to the next phrase's (the last one to the end
    of the audio). A phrase without a reported word (only symbols) joins the one before."""
    timed: list[tuple[float, list[Phrase]]] = []
    waiting: list[Phrase] = []
    for phrase in phrases:
        onsets = [w.seconds for w in words if phrase.start <= w.start < phrase.end]
        if not onsets:
            if timed:
                timed[-1][1].append(phrase)
            else:
                waiting.append(phrase)
            continue
        onset = max(min(onsets), timed[-1][0] if timed else 0.0)
        if timed and onset <= timed[-1][0]:
            timed[-1][1].append(phrase)  # no time of its own: share the previous cue
        else:
            timed.append((onset, [*waiting, phrase]))
        waiting = []
    if not timed:  # nothing was reported at all: one cue for the whole narration
        return _single_cue(phrases, 0.0, audio_seconds)
    if waiting:
        timed[-1][1].extend(waiting)
    cues = []
    for i, (onset, group) in enumerate(timed):
        end = timed[i + 1][0] if i + 1 < len(timed) else max(audio_seconds, onset)
        cues.append(Cue(onset, end, " ".join(p.text for p in group)))
    return cues


def cues_proportional(phrases: Sequence[Phrase], start: float, end: float) -> list[Cue]:
    """Share [start, end] (the measured speech) among the phrases by spoken length."""
    weights = [_spoken_length(p.text) for p in phrases]
    total = sum(weights)
    if total <= 0 or end <= start:
        return _single_cue(phrases, start, max(start, end))
    cues: list[Cue] = []
    t = start
    for i, (phrase, weight) in enumerate(zip(phrases, weights, strict=True)):
        nxt = end if i == len(phrases) - 1 else t + (end - start) * weight / total
        cues.append(Cue(t, nxt, phrase.text))
        t = nxt
    return cues


def _spoken_length(text: str) -> float:
    letters = sum(3 if _CJK_CHAR.match(c) else 1 for c in text if c.isalnum())
    pause = 0
    for word in text.split():
        ending = _ending(word)
        pause += _SENTENCE_PAUSE if ending in _SENTENCE_END else _CLAUSE_PAUSE if ending else 0
    return letters + pause


def _single_cue(phrases: Sequence[Phrase], start: float, end: float) -> list[Cue]:
    text = " ".join(p.text for p in phrases)
    return [Cue(start, end, text)] if text else []


async def speech_span(audio: Path, seconds: float, *, timeout: float = 120) -> tuple[float, float]:
    """When the first sound starts and the last one ends, measured with `silencedetect`
    (-45 dB, 50 ms); the whole file when it holds no silence at either end."""
    graph = "silencedetect=noise=-45dB:duration=0.05,ametadata=mode=print:file=-"
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(audio),
            "-af", graph, "-f", "null", "-"]  # fmt: skip
    report = await run_program(argv, what="ffmpeg (silence detection)", timeout=timeout)
    starts: list[float] = []
    ends: list[float] = []
    for line in report.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        if key == "lavfi.silence_start":
            starts.append(float(value))
        elif key == "lavfi.silence_end":
            ends.append(float(value))
    first = ends[0] if starts and starts[0] <= 0.01 and ends else 0.0
    last = starts[-1] if starts and len(starts) > len(ends) else seconds
    if last <= first:  # silence only
        return 0.0, seconds
    return max(0.0, first), min(seconds, last)


# ------------------------------------------------------------------ ASS


def font_size(config: CaptionsConfig, frame: Size) -> int:
    return config.font_size or round(0.075 * min(frame))


def escape_ass_text(text: str) -> str:
    """Narration as ASS dialogue text that renders literally: no override blocks, no breaks."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    text = " ".join(text.split())
    text = text.replace("\\", "\\" + WORD_JOINER)  # "\N", "\n", "\h" are libass escapes
    return text.replace("{", "\\{").replace("}", "\\}")


def _ass_colour(hex_rgb: str) -> str:
    red, green, blue = hex_rgb[1:3], hex_rgb[3:5], hex_rgb[5:7]
    return f"&H00{blue}{green}{red}".upper()


def _centis(seconds: float) -> int:
    return max(0, math.floor(seconds * 100 + 1e-6))


def _ass_time(centis: int) -> str:
    hours, rest = divmod(centis, 360000)
    minutes, rest = divmod(rest, 6000)
    secs, cs = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{secs:02d}.{cs:02d}"


_ALIGNMENT = {"bottom": 2, "middle": 5, "top": 8}


def ass_document(cues: Sequence[Cue], config: CaptionsConfig, frame: Size) -> str:
    """A complete ASS script at the frame's resolution (sizes and margins are pixels)."""
    width, height = frame
    size = font_size(config, frame)
    margin_v = round(config.margin * height) if config.position != "middle" else 0
    margin_h = round(0.08 * width)
    style = ",".join(
        str(v)
        for v in (
            "Caption", config.font, size, _ass_colour(config.colour), _ass_colour(config.colour),
            _ass_colour(config.outline_colour), "&H80000000", -1 if config.bold else 0, 0, 0, 0,
            100, 100, 0, 0, 1, f"{config.outline:g}", 0, _ALIGNMENT[config.position],
            margin_h, margin_h, margin_v, 1,
        )
    )  # fmt: skip
    lines = [
        "[Script Info]",
        "; written by reelbot",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: None",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
        "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
        "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
        f"Style: {style}",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    for cue in cues:
        # Centiseconds, rounded down: a cue ends exactly where the next one starts.
        start = _centis(cue.start)
        end = max(start + 1, _centis(cue.end))
        text = escape_ass_text(cue.text)
        lines.append(f"Dialogue: 0,{_ass_time(start)},{_ass_time(end)},Caption,,0,0,0,,{text}")
    return "\n".join(lines) + "\n"


def parse_ass_events(document: str) -> list[Cue]:
    """The dialogue lines of an ASS script (times in seconds, text as written)."""

    def seconds(stamp: str) -> float:
        hours, minutes, secs = stamp.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(secs)

    cues = []
    for line in document.splitlines():
        if line.startswith("Dialogue:"):
            fields = line[len("Dialogue:") :].strip().split(",", 9)
            cues.append(Cue(seconds(fields[1]), seconds(fields[2]), fields[9]))
    return cues
