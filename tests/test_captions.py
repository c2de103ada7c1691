"""Burned-in captions: phrases, timing against the speech, escaping, and the pixels they change.

Real espeak-ng and ffmpeg (libass); frames are compared with Pillow, timings with the word
positions espeak-ng reports and with the silences ffmpeg finds in the audio.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from pipeline.aspect import Aspect, Size
from pipeline.captions import (
    Cue,
    ass_document,
    cues_from_words,
    cues_proportional,
    escape_ass_text,
    font_size,
    parse_ass_events,
    speech_span,
    split_phrases,
)
from pipeline.config import CaptionsConfig, VideoConfig
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.tts.base import WordMark
from pipeline.tts.espeak import EspeakTTS
from pipeline.video import ClipSpec, clip_argv
from tests.fakes.speech import FakeSpeech

from .conftest import SettingsFactory
from .media import ffprobe

NARRATION = (
    "For forty years, Elias climbed the same two hundred steps. "
    "Every night he trimmed the wick and polished the glass."
)
# A data directory no filter graph could take unescaped: the ASS path is inside it.
HOSTILE_DIR = "data a:b,c'd[e];f\\g=h"


def words_of(text: str) -> list[str]:
    return text.split()


def _cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


# ---------------------------------------------------------------- phrases


@pytest.mark.parametrize(
    "text",
    [
        NARRATION,
        "Привет, мир. Как дела сегодня у тебя, мой дорогой друг? Ελλάδα, καλημέρα σας!",
        "你好世界。今天天气很好，我们去公园散步吧，好不好？",
        '— well {\\an8} "quoted." Supercalifragilisticexpialidocious words, and more !!',
    ],
)
def test_phrases_are_short_and_cover_the_narration_in_order(text: str) -> None:
    config = CaptionsConfig()
    phrases = split_phrases(text, max_words=config.max_words, max_chars=config.max_chars)
    assert "".join("".join(p.text.split()) for p in phrases) == "".join(text.split())
    assert [w for p in phrases for w in words_of(p.text)] == words_of(text) or _cjk(text)
    for phrase in phrases:
        assert " ".join(text[phrase.start : phrase.end].split()) == phrase.text
        assert len(words_of(phrase.text)) <= config.max_words
        if len(words_of(phrase.text)) > 1:  # a single longer word is allowed alone
            assert len(phrase.text) <= config.max_chars * 2
    starts = [p.start for p in phrases]
    assert starts == sorted(starts)


def test_phrases_break_after_punctuation_and_balance() -> None:
    texts = [p.text for p in split_phrases(NARRATION, max_words=4, max_chars=24)]
    assert texts[0] == "For forty years,"
    assert texts[2] == "two hundred steps."
    five = split_phrases("one two three four five", max_words=4, max_chars=40)
    assert [p.text for p in five] == ["one two three", "four five"]


# ---------------------------------------------------------------- escaping


def test_narration_cannot_inject_ass_overrides_or_line_breaks() -> None:
    hostile = "a {\\an8\\c&H0000FF&} b \\N c \\n d \\h e }{ f\nline\r\ng"
    escaped = escape_ass_text(hostile)
    assert "\n" not in escaped and "\r" not in escaped
    # Every brace is escaped, every backslash is followed by a word joiner (not N, n, h, {, }).
    for i, char in enumerate(escaped):
        if char in "{}":
            assert escaped[i - 1] == "\\", escaped
        if char == "\\" and escaped[i + 1] not in "{}":
            assert escaped[i + 1] == "\u2060", escaped
    document = ass_document([Cue(0, 1, hostile)], CaptionsConfig(), Size(1080, 1920))
    assert len(parse_ass_events(document)) == 1
    assert document.count("\nDialogue:") == 1


# ---------------------------------------------------------------- timing


def test_cues_from_word_onsets() -> None:
    text = "One two, three four five. Six!"
    phrases = split_phrases(text, max_words=2, max_chars=40)
    assert [p.text for p in phrases] == ["One two,", "three four", "five.", "Six!"]
    onsets = [(0, 3, 0.0), (4, 3, 0.3), (9, 5, 0.9), (15, 4, 1.2), (20, 4, 1.5), (26, 3, 2.2)]
    words = [WordMark(m, n, t) for m, n, t in onsets]
    cues = cues_from_words(phrases, words, 3.0)
    assert cues == [
        Cue(0.0, 0.9, "One two,"), Cue(0.9, 1.5, "three four"), Cue(1.5, 2.2, "five."),
        Cue(2.2, 3.0, "Six!"),
    ]  # fmt: skip
    # A phrase the synthesizer reported no word for shares the previous cue.
    cues = cues_from_words(phrases, [w for w in words if w.start != 20], 3.0)
    assert [c.text for c in cues] == ["One two,", "three four five.", "Six!"]


def test_proportional_cues_share_the_speech_by_spoken_length() -> None:
    phrases = split_phrases("Aaaa bbbb cccc dddd eeee ffff gggg hhhh", max_words=4, max_chars=40)
    cues = cues_proportional(phrases, 0.5, 4.5)
    assert [(c.start, c.end) for c in cues] == [(0.5, 2.5), (2.5, 4.5)]


async def test_speech_span_is_measured(tmp_path: Path) -> None:
    wav = tmp_path / "s.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=300:d=2,adelay=500,apad=pad_dur=0.7",
         "-ar", "24000", str(wav)],
        check=True, timeout=60,
    )  # fmt: skip
    seconds = ffprobe(wav).duration
    start, end = await speech_span(wav, seconds)
    assert abs(start - 0.5) < 0.03 and abs(end - 2.5) < 0.03
    assert abs(seconds - 3.2) < 0.01


def silences(audio: Path) -> list[tuple[float, float]]:
    """Silent stretches (-40 dB, 80 ms or longer) that ffmpeg finds in the audio."""
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(audio), "-af",
         "silencedetect=n=-40dB:d=0.08", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stderr  # fmt: skip
    starts = [float(x.split("silence_start: ")[1].split()[0]) for x in log.splitlines()
              if "silence_start: " in x]  # fmt: skip
    ends = [float(x.split("silence_end: ")[1].split()[0]) for x in log.splitlines()
            if "silence_end: " in x]  # fmt: skip
    return list(zip(starts, ends, strict=False))


async def test_espeak_captions_follow_the_spoken_words(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    plan = plan_render(parse_script(f"## 1\n{NARRATION}"), settings)
    assert plan.captions  # 9:16: on by default
    result = await render_plan(plan, settings, tmp_path / "v.mp4")
    scene = result.scenes[0]
    assert scene.captions is not None and scene.captions.parent.parent.name == "captions"
    cues = parse_ass_events(scene.captions.read_text(encoding="utf-8"))

    # The timing source: espeak-ng's own word positions, for exactly the audio in the video.
    again = tmp_path / "again.wav"
    words = await EspeakTTS().synthesize_timed(NARRATION, voice="en-us", speed=1.0, out=again)
    assert words is not None and len(words) >= len(words_of(NARRATION))
    assert again.read_bytes()[44:] == scene.audio.read_bytes()[44:]
    # ...and the source agrees with the sound: every pause ends where a word starts, and no
    # word starts inside a pause.
    internal = [(s, e) for s, e in silences(scene.audio) if s > 0.05 and e < scene.audio_seconds]
    assert len(internal) >= 2  # after "years," and after "steps."
    for start, end in internal:
        assert min(abs(w.seconds - end) for w in words) < 0.03, (start, end)
        assert not [w for w in words if start + 0.03 < w.seconds < end - 0.03]

    config = settings.captions
    phrases = split_phrases(NARRATION, max_words=config.max_words, max_chars=config.max_chars)
    assert [c.text for c in cues] == [p.text for p in phrases]
    for cue, phrase in zip(cues, phrases, strict=True):
        onsets = [w.seconds for w in words if phrase.start <= w.start < phrase.end]
        assert abs(cue.start - min(onsets)) < 0.011  # shown when its first word starts
        for onset in onsets:  # and on screen while each of its words is spoken
            assert cue.start - 0.011 < onset < cue.end
    for before, after in itertools.pairwise(cues):
        assert before.end == after.start  # one phrase after another, no gap, no overlap
    assert cues[0].start == 0.0
    assert abs(cues[-1].end - scene.audio_seconds) < 0.011


async def test_captions_for_a_speech_server_are_proportional_to_the_measured_audio(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech() as speech:
        settings = make_settings(tts={"provider": "openai", "base_url": speech.base_url,
                                      "voice": "af_bella"})  # fmt: skip
        plan = plan_render(parse_script(f"## 1\n{NARRATION}"), settings)
        result = await render_plan(plan, settings, tmp_path / "v.mp4")
    scene = result.scenes[0]
    assert scene.captions is not None
    cues = parse_ass_events(scene.captions.read_text(encoding="utf-8"))
    assert " ".join(c.text for c in cues) == NARRATION
    # The fake's audio is sound from start to end: the cues span all of it, shared by length.
    assert cues[0].start == 0 and abs(cues[-1].end - scene.audio_seconds) < 0.011
    config = settings.captions
    phrases = split_phrases(NARRATION, max_words=config.max_words, max_chars=config.max_chars)
    expected = cues_proportional(phrases, 0.0, scene.audio_seconds)
    for cue, want in zip(cues, expected, strict=True):
        assert abs(cue.start - want.start) < 0.011 and abs(cue.end - want.end) < 0.011


# ---------------------------------------------------------------- pixels


def frame(video: Path, seconds: float, out: Path) -> Image.Image:
    subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{seconds}", "-i", str(video),
                    "-frames:v", "1", "-y", str(out)], check=True, timeout=60)  # fmt: skip
    return Image.open(out).convert("RGB")


def caption_band(config: CaptionsConfig, frame_size: Size) -> tuple[int, int]:
    """Rows the bottom captions may cover: two lines above the safe margin, plus outline."""
    size = font_size(config, frame_size)
    baseline = frame_size.height - round(config.margin * frame_size.height)
    reach = round(config.outline) + 4
    return baseline - round(2.6 * size) - reach, baseline + round(0.35 * size) + reach


def row_differences(a: Image.Image, b: Image.Image) -> list[int]:
    diff = ImageChops.difference(a, b).convert("L")
    width, height = diff.size
    data = diff.tobytes()  # one byte a pixel, row after row
    return [max(data[y * width : (y + 1) * width]) for y in range(height)]


async def test_captions_change_the_caption_band_and_nothing_else(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(storage={"data_dir": str(tmp_path / HOSTILE_DIR)})
    script = parse_script("## 1\nimage: a red door\nThe captions test says a few words here.")
    scenes = {}
    for captions in (True, False):
        plan = plan_render(script, settings, captions=captions)
        result = await render_plan(plan, settings, tmp_path / f"{captions}.mp4")
        scenes[captions] = result.scenes[0]
    with_captions, without = scenes[True], scenes[False]
    assert with_captions.image == without.image and with_captions.audio == without.audio
    assert with_captions.captions is not None and without.captions is None
    assert HOSTILE_DIR in str(with_captions.captions)  # the path went through the filter graph
    top, bottom = caption_band(settings.captions, Size(1080, 1920))

    # 1. The clips as rendered (H.264 at crf 21): the band changes a lot; elsewhere only the
    # encoder's rounding differs (its rate control sees a different picture).
    a = frame(with_captions.clip, 1.0, tmp_path / "a.png")
    b = frame(without.clip, 1.0, tmp_path / "b.png")
    rows = row_differences(a, b)
    assert sum(1 for y in range(top, bottom) if rows[y] > 128) > 40
    diff = ImageChops.difference(a, b).convert("L")
    values = diff.tobytes()  # one byte per pixel, row after row
    outside = values[: top * 1080] + values[bottom * 1080 :]
    assert sum(outside) / len(outside) < 0.5  # measured: 0.15
    assert sum(1 for v in outside if v > 8) < 0.005 * len(outside)  # measured: 0.13%
    assert max(outside) < 48  # measured: 30, where the picture has edges

    # 2. The same clip recipe encoded losslessly: outside the band, not one pixel differs.
    frames = {}
    for captions, scene in scenes.items():
        spec = ClipSpec(scene.image, scene.audio, scene.audio_seconds, Size(1080, 1920),
                        VideoConfig(), captions=scene.captions)  # fmt: skip
        argv = clip_argv(spec, tmp_path / f"lossless-{captions}.mp4")
        argv[argv.index("-crf") + 1] = "0"
        argv[argv.index("-profile:v") + 1] = "high444"
        subprocess.run(argv, check=True, timeout=300)
        frames[captions] = frame(tmp_path / f"lossless-{captions}.mp4", 1.0,
                                 tmp_path / f"lossless-{captions}.png")  # fmt: skip
    rows = row_differences(frames[True], frames[False])
    changed = [y for y, v in enumerate(rows) if v > 0]
    assert changed, "the captions changed nothing"
    assert top <= changed[0] and changed[-1] < bottom, (changed[0], changed[-1], top, bottom)
    assert sum(1 for y in range(top, bottom) if rows[y] > 128) > 40


def unescape(text: str, stops: str) -> tuple[str, str]:
    """One level of ffmpeg's backslash escaping: (the value up to an unescaped stop, the rest)."""
    value, i = [], 0
    while i < len(text) and text[i] not in stops:
        if text[i] == "\\":
            i += 1
        value.append(text[i])
        i += 1
    return "".join(value), text[i:]


def test_the_captions_filter_comes_after_the_zoom_with_an_escaped_path(tmp_path: Path) -> None:
    ass = tmp_path / "a:b,c'd[e];f\\g=h" / "x.ass"
    Image.new("RGB", (576, 1024)).save(tmp_path / "i.png")  # the zoom reads its size
    spec = ClipSpec(tmp_path / "i.png", tmp_path / "a.wav", 2.0, Size(1080, 1920), VideoConfig(),
                    captions=ass)  # fmt: skip
    argv = clip_argv(spec, tmp_path / "o.mp4")
    graph = argv[argv.index("-filter_complex") + 1]
    assert "a:b,c'd[e];f" not in graph
    # The graph parser removes one level of escaping, the filter's option parser the other.
    segment, rest = unescape(graph[graph.index("ass=") :], "[];,")
    # The filter ends where the graph says, not inside the path; and it is the last step of
    # the picture (after the zoom): its output is the video stream written to the clip.
    label = rest[: rest.index("]") + 1]
    assert argv[argv.index(label) - 1] == "-map"
    name, options = segment.split("=", 1)
    assert name == "ass" and options.startswith("filename=")
    value, rest = unescape(options[len("filename=") :], ":")
    assert value == str(ass.resolve()) and rest == ""


def test_captions_default_on_for_portrait_only(make_settings: SettingsFactory) -> None:
    script = parse_script("## 1\nHello.")
    settings = make_settings()
    assert plan_render(script, settings).captions
    assert not plan_render(script, settings, aspect=Aspect.LANDSCAPE).captions
    assert not plan_render(script, settings, aspect=Aspect.SQUARE).captions
    assert not plan_render(script, settings, captions=False).captions
    assert plan_render(script, make_settings(captions={"enabled": True}),
                       aspect=Aspect.SQUARE).captions  # fmt: skip
    assert not plan_render(script, make_settings(captions={"enabled": False})).captions


def test_the_command_line_takes_captions_and_music() -> None:
    from pipeline.cli import _parser

    args = _parser().parse_args(["render", "s.md", "--no-captions", "--music", "m.ogg"])
    assert args.captions is False and args.music == Path("m.ogg")
    assert _parser().parse_args(["render", "s.md", "--captions"]).captions is True
    assert _parser().parse_args(["render", "s.md"]).captions is None  # the config decides
