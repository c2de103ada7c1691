"""Property tests: whatever bytes or text arrive, the parser either returns a script or raises
the one script error, always with a line inside the input; and every text in a script it
returns is clean (one line, no control character, escape sequence or lone surrogate)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import LimitsConfig
from pipeline.errors import ScriptError
from pipeline.script import Script, parse_script
from pipeline.text import clean_text

LIMITS = LimitsConfig(max_scenes=20, max_chars_per_scene=300, max_script_bytes=4000)
FORMATS = st.sampled_from([None, "s.md", "s.json", "s.txt", "s.bin"])
# Any character, lone surrogates and control characters (which a JSON escape can carry) too.
ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs", "Cc"]))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MARKDOWN_LINES = st.one_of(
    st.sampled_from(["# Title", "## Scene", "##", "#", "", "image: a cat", "negative: dogs",
                     "voice: en-us", "seed: 12", "seed: x", "aspect: 9:16", "aspect: 4:3",
                     "negative_prompt: blur", "mood: happy", "<!-- note -->"]),
    st.text(ANY_CHAR, max_size=40),
)  # fmt: skip


def check(source: str | bytes, filename: str | None) -> None:
    text_lines = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    line_count = max(1, len(text_lines.splitlines()) + 1)
    try:
        script = parse_script(source, filename=filename, limits=LIMITS)
    except ScriptError as error:
        assert 1 <= error.line <= line_count, (error.line, line_count)
        assert str(error).startswith(f"line {error.line}")
        return
    assert isinstance(script, Script)
    assert 1 <= len(script.scenes) <= LIMITS.max_scenes
    for number, scene in enumerate(script.scenes, start=1):
        assert scene.number == number
        assert scene.narration.strip() and scene.image_prompt.strip()
        assert len(scene.narration) <= LIMITS.max_chars_per_scene
        texts = [scene.narration, scene.image_prompt, scene.negative_prompt, scene.voice]
        for text in [script.title, script.voice, script.negative_prompt, *texts]:
            assert text is None or text == clean_text(text), text


@FUZZ
@given(st.binary(max_size=600), FORMATS)
def test_arbitrary_bytes(data: bytes, filename: str | None) -> None:
    check(data, filename)


@FUZZ
@given(st.text(ANY_CHAR, max_size=600), FORMATS)
def test_arbitrary_text(text: str, filename: str | None) -> None:
    check(text, filename)


@FUZZ
@given(st.lists(MARKDOWN_LINES, max_size=40), FORMATS)
def test_markdown_like_text(lines: list[str], filename: str | None) -> None:
    check("\n".join(lines), filename)


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(ANY_CHAR, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)  # fmt: skip
SCENE = st.fixed_dictionaries(
    {"narration": st.one_of(st.text(ANY_CHAR, max_size=50), JSON_VALUES)},
    optional={"image_prompt": JSON_VALUES, "negative_prompt": JSON_VALUES, "voice": JSON_VALUES,
              "seed": st.one_of(st.integers(), JSON_VALUES), "extra": JSON_VALUES},
)  # fmt: skip


@FUZZ
@given(
    st.fixed_dictionaries(
        {"scenes": st.one_of(st.lists(SCENE, max_size=5), JSON_VALUES)},
        optional={"title": JSON_VALUES, "aspect": st.one_of(st.sampled_from(["9:16", "1:1"]),
                  JSON_VALUES), "voice": JSON_VALUES},
    ),
    st.integers(min_value=0, max_value=4),
)  # fmt: skip
def test_json_shaped_input(data: dict[str, Any], indent: int) -> None:
    check(json.dumps(data, indent=indent or None), "s.json")
