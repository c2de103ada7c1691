from __future__ import annotations

import json

import pytest

from pipeline.aspect import Aspect
from pipeline.config import LimitsConfig
from pipeline.errors import ScriptError
from pipeline.script import parse_script

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
