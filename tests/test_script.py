from __future__ import annotations

import json

import pytest

from pipeline.aspect import Aspect
from pipeline.config import LimitsConfig
from pipeline.errors import ScriptError
from pipeline.script import SEED_MAX, parse_script
from pipeline.text import clean_text

LIGHTHOUSE = """\
# The Lighthouse Keeper
voice: en-us
aspect: 9:16
negative_prompt: blurry, deformed hands, text, watermark

## Scene 1
image: a lone lighthouse on a cliff at dusk, cinematic lighting
For forty years, Elias climbed the same two hundred steps.

## Scene 2
image: close-up of weathered hands trimming a lamp wick
negative: gloves
Every night he trimmed the wick
and polished the glass.
"""


def test_markdown_sets_title_defaults_and_scene_fields() -> None:
    script = parse_script(LIGHTHOUSE, filename="story.md")
    assert script.title == "The Lighthouse Keeper"
    assert script.voice == "en-us"
    assert script.aspect is Aspect.PORTRAIT
    assert script.negative_prompt == "blurry, deformed hands, text, watermark"
    first, second = script.scenes
    assert first.image_prompt == "a lone lighthouse on a cliff at dusk, cinematic lighting"
    assert first.narration == "For forty years, Elias climbed the same two hundred steps."
    assert first.negative_prompt is None
    assert second.negative_prompt == "gloves"
    assert second.narration == "Every night he trimmed the wick and polished the glass."
    assert (first.line, second.line) == (6, 10)


def test_markdown_detected_without_a_filename_and_image_defaults_to_narration() -> None:
    script = parse_script("## one\nHello there.\n## two\nseed: 42\nGoodbye.")
    assert [s.image_prompt for s in script.scenes] == ["Hello there.", "Goodbye."]
    assert script.scenes[1].seed == 42
    assert script.title == "Untitled"


def test_narration_lines_that_look_like_keys_stay_narration() -> None:
    script = parse_script("## 1\nNote: the tide was turning.\n")
    assert script.scenes[0].narration == "Note: the tide was turning."


def test_json_has_the_same_model() -> None:
    data = {
        "title": "T",
        "voice": "en-gb",
        "aspect": "16:9",
        "negative_prompt": "text",
        "scenes": [
            {"narration": "One.", "image_prompt": "a cat", "negative_prompt": "dogs"},
            {"narration": "Two.", "voice": "fr", "seed": 7},
        ],
    }
    script = parse_script(json.dumps(data, indent=2), filename="x.json")
    assert script.aspect is Aspect.LANDSCAPE
    assert script.scenes[0].image_prompt == "a cat"
    assert script.scenes[0].negative_prompt == "dogs"
    assert script.scenes[1].image_prompt == "Two."
    assert (script.scenes[1].voice, script.scenes[1].seed) == ("fr", 7)


def test_plain_text_paragraphs_are_scenes() -> None:
    script = parse_script("First line\ncontinues.\n\n\nSecond.\n", filename="my_story.txt")
    assert script.title == "my story"
    assert [s.narration for s in script.scenes] == ["First line continues.", "Second."]
    assert [s.image_prompt for s in script.scenes] == ["First line continues.", "Second."]
    assert [s.line for s in script.scenes] == [1, 5]


@pytest.mark.parametrize(
    ("text", "filename", "line", "scene", "words"),
    [
        ("# T\nmood: grim\n## 1\nHi.", "a.md", 2, None, "unknown setting 'mood'"),
        ("# T\nHello before scenes\n## 1\nHi.", "a.md", 2, None, "before the first scene"),
        ("# T\naspect: 4:3\n## 1\nHi.", "a.md", 2, None, "unknown aspect"),
        ("# T\n## 1\nHi.\n## 2\nimage: a dog\n", "a.md", 4, 2, "no narration"),
        ("## 1\nimage: a\nimage: b\nHi.", "a.md", 3, 1, "given twice"),
        ("## 1\nseed: lots\nHi.", "a.md", 2, 1, "seed must be a whole number"),
        ("## 1\nHi.\n# Late title", "a.md", 3, 1, "title"),
        ("# Only a title\n", "a.md", 1, None, "no scenes"),
        ('{\n  "scenes": [\n    {"narration": "a"},\n  ]\n}', "a.json", 4, None, "JSON"),
        ('{\n  "scenes": [\n    {"narration": "a"},\n    {"narration": 5}\n  ]\n}', "a.json",
         4, 2, "'narration' must be a string"),
        ('{\n  "title": "x",\n  "scenez": []\n}', "a.json", 3, None, "unknown key 'scenez'"),
        ('{"scenes": []}', "a.json", 1, None, "non-empty list"),
        ("[1, 2]", "a.json", 1, None, "must be an object"),
        ("\n\n   \n", "a.txt", 1, None, "empty"),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_scene(
    text: str, filename: str, line: int, scene: int | None, words: str
) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(text, filename=filename)
    error = caught.value
    assert (error.line, error.scene) == (line, scene)
    assert words in str(error)
    assert str(error).startswith(f"line {line}")


def test_binary_input_is_refused_with_a_line() -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(b"## 1\nfine\n\xff\xfe\x00garbage", filename="a.md")
    assert caught.value.line == 3
    assert "UTF-8" in str(caught.value)


def test_limits_name_the_limit() -> None:
    limits = LimitsConfig(max_scenes=2, max_chars_per_scene=20, max_script_bytes=200)
    with pytest.raises(ScriptError, match="the limit is 2") as caught:
        parse_script("## a\nOne.\n## b\nTwo.\n## c\nThree.", limits=limits)
    assert (caught.value.line, caught.value.scene) == (5, 3)
    with pytest.raises(ScriptError, match="limit is 20 per scene"):
        parse_script("## a\n" + "word " * 10, limits=limits)
    with pytest.raises(ScriptError, match="limit is 200 bytes"):
        parse_script("## a\n" + "x" * 300, limits=limits)


@pytest.mark.parametrize(
    ("text", "filename", "line"),
    [
        ("## 1\nseed: ²\nHello.", "a.md", 2),  # a digit to str.isdigit, not to int()
        ("## 1\nseed: ١٢\nHello.", "a.md", 2),  # Arabic-Indic digits
        ("## 1\nHello.\n## 2\nseed: " + "9" * 5000 + "\nBye.", "a.md", 4),
        (f"## 1\nseed: {SEED_MAX + 1}\nHello.", "a.md", 2),
        ("## 1\nseed: -1\nHello.", "a.md", 2),
        ('{"scenes": [\n {"narration": "a", "seed": ' + "9" * 5000 + "}]}", "a.json", 2),
        ('{"scenes": [\n {"narration": "a", "seed": ' + str(SEED_MAX + 1) + "}]}", "a.json", 2),
        ('{"scenes": [\n {"narration": "a", "seed": 1.5}]}', "a.json", 2),
    ],
)
def test_seeds_are_bounded_to_the_image_apis_range(text: str, filename: str, line: int) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script(text, filename=filename)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}")
    if "seed" in caught.value.problem:
        assert f"0 to {SEED_MAX}" in caught.value.problem


def test_the_largest_seed_is_taken() -> None:
    script = parse_script(f"## 1\nseed: {SEED_MAX}\nHello.", filename="a.md")
    assert script.scenes[0].seed == SEED_MAX == 2**31 - 1


HOSTILE_JSON = {
    "title": "Title\u0000 with NUL \u001b[31mred\u001b[0m \u001b]0;PWNED\u0007 \ud800 end\u009b2J",
    "voice": "en-us\u0000",
    "scenes": [
        {
            "narration": "Hello \u0000 there, the rest \u0007 of the sentence \u001b[2J stays.",
            "image_prompt": "a cat\u0000 on a mat\n\u001b[1mbold",
            "negative_prompt": "blur\u0085",
        }
    ],
}


def test_json_escapes_are_cleaned_the_same_way_everywhere() -> None:
    script = parse_script(json.dumps(HOSTILE_JSON), filename="x.json")
    scene = script.scenes[0]
    assert script.title == "Title with NUL red end"
    assert script.voice == "en-us"
    # The NUL does not cut the narration: every word after it is still there.
    assert scene.narration == "Hello there, the rest of the sentence stays."
    assert scene.image_prompt == "a cat on a mat bold"
    assert scene.negative_prompt == "blur"
    for text in (script.title, scene.narration, scene.image_prompt, script.voice):
        assert text is not None and text == clean_text(text)
        assert text.encode("utf-8")  # no lone surrogate left: it encodes


def test_a_narration_of_only_escapes_is_no_narration() -> None:
    data = {"scenes": [{"narration": "\u0000\u001b[0m\u0007"}]}
    with pytest.raises(ScriptError, match="no 'narration'"):
        parse_script(json.dumps(data), filename="x.json")


def test_a_lone_surrogate_in_text_is_a_script_error_with_its_line() -> None:
    with pytest.raises(ScriptError) as caught:
        parse_script("# T\n## 1\nHello \ud800 there.\n", filename="x.md")
    assert caught.value.line == 3
    assert "lone surrogate" in str(caught.value)


def test_markdown_title_with_markup_and_c1_controls_is_kept_as_text() -> None:
    script = parse_script("# [/x] [bold]big\u009b31m\n## 1\nHello.", filename="x.md")
    assert script.title == "[/x] [bold]big"  # the C1 escape sequence (CSI 31 m) is gone


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("a\x1b[31mb\x1b[0m", "ab"),
        ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "alink"),
        ("a\x1b]0;title\x07b", "ab"),
        ("a\x00b", "a b"),
        ("a\ud800b", "ab"),
        ("  a \n\t b  ", "a b"),
        ("a\x9b2Jb", "ab"),
        ("映画 🎬 فيلم", "映画 🎬 فيلم"),
    ],
)
def test_clean_text(dirty: str, clean: str) -> None:
    assert clean_text(dirty) == clean
