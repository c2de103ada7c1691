"""Scripts: Markdown (main), JSON and plain text, parsed into one validated model.

Every problem raises `ScriptError`, whose message names the line (and the scene). Every text
field (title, narration, prompts, voice, media names) goes through `clean_text`: one line, no
control character or terminal escape, whatever a JSON escape spelled.

A scene may show its own picture or video clip instead of a generated image: `media: NAME` in
a Markdown scene, `"media": "NAME"` in a JSON scene, a line `media: NAME` in a plain-text
paragraph (there, NAME is one word with a file extension, so narration such as "Media: the
press loved it" stays narration). The name is only text here; what it names is found and
checked by `pipeline/own_media.py` (the CLI: in the script's folder; the bot: among the files
uploaded with the render). `to_markdown` writes a script back as Markdown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .aspect import Aspect
from .config import LimitsConfig
from .errors import ScriptError
from .text import clean_text

__all__ = ["SEED_MAX", "Scene", "Script", "ScriptFormat", "parse_script", "to_markdown"]

ScriptFormat = Literal["markdown", "json", "text"]
# Seeds are 0 to 2**31 - 1: the image API takes an integer, and a signed 32-bit one is what
# every diffusion back end accepts; derived and regenerated seeds use the same range.
SEED_MAX = 2**31 - 1


class Scene(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=1)
    narration: str
    image_prompt: str
    negative_prompt: str | None = None
    voice: str | None = None
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    # The scene's own picture or clip, by name (None: a generated image of `image_prompt`).
    media: str | None = None
    line: int = 1


class Script(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    voice: str | None = None
    aspect: Aspect | None = None
    negative_prompt: str | None = None
    scenes: tuple[Scene, ...]


# Header keys (before the first scene) and the Script field each one sets.
_HEADER_KEYS = {
    "voice": "voice",
    "aspect": "aspect",
    "negative_prompt": "negative_prompt",
    "negative": "negative_prompt",
    "title": "title",
}
# Scene keys and the Scene field each one sets.
_SCENE_KEYS = {
    "image": "image_prompt",
    "image_prompt": "image_prompt",
    "negative": "negative_prompt",
    "negative_prompt": "negative_prompt",
    "voice": "voice",
    "seed": "seed",
    "media": "media",
}
# What a scene with its own media cannot also have: they describe the generated image.
_IMAGE_FIELDS = ("image_prompt", "negative_prompt", "seed")
_KEY_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.*)$")
_EXTENSIONS: dict[str, ScriptFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".json": "json",
    ".txt": "text",
}


def parse_script(
    source: str | bytes,
    *,
    filename: str | None = None,
    limits: LimitsConfig | None = None,
) -> Script:
    """Parse a script; the format comes from the file name, else from the content."""
    limits = limits or LimitsConfig()
    text = _decode(source, limits)
    fmt = _detect_format(text, filename)
    default_title = _title_from_filename(filename)
    if fmt == "json":
        script = _parse_json(text, default_title)
    elif fmt == "markdown":
        script = _parse_markdown(text, default_title)
    else:
        script = _parse_text(text, default_title)
    _check_limits(script, limits)
    return script


def _decode(source: str | bytes, limits: LimitsConfig) -> str:
    size = len(source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source)
    if size > limits.max_script_bytes:
        raise ScriptError(
            f"the script is {size:,} bytes; the limit is {limits.max_script_bytes:,} bytes",
            line=1,
        )
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            raise ScriptError(
                "this is not UTF-8 text (is it a binary file?); save the script as UTF-8",
                line=line,
            ) from None
    else:
        text = source.removeprefix("\ufeff")
    bad = next((i for i, ch in enumerate(text) if _is_control(ch) or _is_surrogate(ch)), None)
    if bad is not None:
        what = "half of a character (a lone surrogate)" if _is_surrogate(text[bad]) else (
            "a control character")  # fmt: skip
        raise ScriptError(
            f"the script contains {what}, U+{ord(text[bad]):04X}; is it a binary file?",
            line=text.count("\n", 0, bad) + 1,
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return (code < 32 and ch not in "\t\n\r") or code == 127


def _is_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udfff"


def _detect_format(text: str, filename: str | None) -> ScriptFormat:
    if filename:
        for ext, fmt in _EXTENSIONS.items():
            if filename.lower().endswith(ext):
                return fmt
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "json"
    if any(line.startswith(("# ", "## ")) for line in text.split("\n")):
        return "markdown"
    return "text"


def _title_from_filename(filename: str | None) -> str:
    if not filename:
        return "Untitled"
    stem = filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return clean_text(stem.replace("_", " ").replace("-", " ")) or "Untitled"


# ---------------------------------------------------------------- Markdown


@dataclass
class _SceneDraft:
    number: int
    line: int
    narration: list[str]
    fields: dict[str, tuple[str, int]]


def _parse_markdown(text: str, default_title: str) -> Script:
    title: str | None = None
    header: dict[str, tuple[str, int]] = {}
    drafts: list[_SceneDraft] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = clean_text(raw)
        current = drafts[-1] if drafts else None
        if raw.startswith("## ") or line == "##":
            drafts.append(_SceneDraft(len(drafts) + 1, lineno, [], {}))
        elif raw.startswith("# ") or line == "#":
            if current is not None:
                raise ScriptError(
                    "a title ('# ') can only come before the first scene",
                    line=lineno,
                    scene=current.number,
                )
            if title is not None:
                raise ScriptError("the script has two titles ('# ')", line=lineno)
            title = line[1:].strip()
        elif not line or line.startswith("<!--"):
            continue
        elif current is None:
            _read_header_line(line, lineno, header)
        else:
            match = _KEY_LINE.match(line)
            key = match.group(1).lower() if match else ""
            if match and key in _SCENE_KEYS:
                field = _SCENE_KEYS[key]
                if field in current.fields:
                    raise ScriptError(
                        f"'{key}:' is given twice in this scene", line=lineno, scene=current.number
                    )
                current.fields[field] = (match.group(2).strip(), lineno)
            else:
                current.narration.append(line)
    if not drafts:
        raise ScriptError(
            "no scenes found: start each scene with a '## ' heading", line=_last_line(text)
        )
    if "title" in header:
        title = header.pop("title")[0]
    return Script(
        title=title or default_title,
        voice=_header_value(header, "voice"),
        aspect=_header_aspect(header),
        negative_prompt=_header_value(header, "negative_prompt"),
        scenes=tuple(_finish_scene(d) for d in drafts),
    )


def _read_header_line(line: str, lineno: int, header: dict[str, tuple[str, int]]) -> None:
    match = _KEY_LINE.match(line)
    if not match:
        raise ScriptError(
            "text before the first scene: start a scene with '## ' "
            "or set a default with 'key: value'",
            line=lineno,
        )
    key = match.group(1).lower()
    if key not in _HEADER_KEYS:
        known = ", ".join(sorted(_HEADER_KEYS))
        raise ScriptError(f"unknown setting '{key}' (known settings: {known})", line=lineno)
    field = _HEADER_KEYS[key]
    if field in header:
        raise ScriptError(f"'{key}:' is given twice", line=lineno)
    header[field] = (match.group(2).strip(), lineno)


def _header_value(header: dict[str, tuple[str, int]], field: str) -> str | None:
    value = header.get(field)
    return value[0] or None if value else None


def _header_aspect(header: dict[str, tuple[str, int]]) -> Aspect | None:
    if "aspect" not in header:
        return None
    value, lineno = header["aspect"]
    try:
        return Aspect.parse(value)
    except ValueError as exc:
        raise ScriptError(str(exc), line=lineno) from None


def _finish_scene(draft: _SceneDraft) -> Scene:
    narration = " ".join(draft.narration).strip()
    if not narration:
        raise ScriptError(
            "this scene has no narration: write the words to speak under its heading",
            line=draft.line,
            scene=draft.number,
        )
    values = {field: value for field, (value, _) in draft.fields.items()}
    seed: int | None = None
    if "media" in values:
        _media_alone(draft.fields, draft.number)
    if "seed" in values:
        seed = _parse_seed(values.pop("seed"), draft.fields["seed"][1], draft.number)
    for field in ("image_prompt", "negative_prompt", "voice", "media"):
        if field in values and not values[field]:
            raise ScriptError(
                f"'{field.split('_')[0]}:' is empty",
                line=draft.fields[field][1],
                scene=draft.number,
            )
    return Scene(
        number=draft.number,
        narration=narration,
        image_prompt=values.get("image_prompt") or narration,
        negative_prompt=values.get("negative_prompt"),
        voice=values.get("voice"),
        seed=seed,
        media=values.get("media"),
        line=draft.line,
    )


def _media_alone(fields: dict[str, tuple[str, int]], scene: int) -> None:
    """A scene shows its own media or a generated image, not both: say which line is extra."""
    for field in _IMAGE_FIELDS:
        if field in fields:
            key = {"image_prompt": "image", "negative_prompt": "negative"}.get(field, field)
            raise ScriptError(
                f"'{key}:' has no use in a scene with its own media ('media:'): remove one",
                line=fields[field][1],
                scene=scene,
            )


def _parse_seed(value: str, line: int, scene: int) -> int:
    # ASCII digits only ("²" is a digit to str.isdigit), and few of them before int() is tried.
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > SEED_MAX:
        raise ScriptError(f"seed must be a whole number from 0 to {SEED_MAX}", line=line,
                          scene=scene)  # fmt: skip
    return int(value)


def _last_line(text: str) -> int:
    return max(1, text.rstrip("\n").count("\n") + 1)


# ---------------------------------------------------------------- plain text


# In plain text, `media: NAME` is a media line only when NAME is one word with an extension.
_TEXT_MEDIA = re.compile(r"^media\s*:\s*(\S+\.[A-Za-z0-9]{1,5})$", re.IGNORECASE)


def _parse_text(text: str, default_title: str) -> Script:
    scenes: list[Scene] = []
    paragraph: list[str] = []
    media: str | None = None
    start = 1
    for lineno, raw in enumerate([*text.split("\n"), ""], start=1):
        line = clean_text(raw)
        found = _TEXT_MEDIA.match(line)
        if found:
            if not paragraph and media is None:
                start = lineno
            if media is not None:
                raise ScriptError("'media:' is given twice in this scene", line=lineno,
                                  scene=len(scenes) + 1)  # fmt: skip
            media = found.group(1)
        elif line:
            if not paragraph and media is None:
                start = lineno
            paragraph.append(line)
        elif paragraph:
            narration = " ".join(paragraph)
            scenes.append(
                Scene(
                    number=len(scenes) + 1, narration=narration, image_prompt=narration,
                    media=media, line=start,
                )
            )  # fmt: skip
            paragraph, media = [], None
        elif media is not None:
            raise ScriptError(
                "this scene has no narration: write the words to speak under its 'media:' line",
                line=start,
                scene=len(scenes) + 1,
            )
    if not scenes:
        raise ScriptError("the script is empty: write one paragraph per scene", line=1)
    return Script(title=default_title, scenes=tuple(scenes))


# ---------------------------------------------------------------- JSON

_JSON_TOP = {"title", "voice", "aspect", "negative_prompt", "scenes"}
_JSON_SCENE = {"narration", "image_prompt", "negative_prompt", "voice", "seed", "media"}


def _parse_json(text: str, default_title: str) -> Script:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScriptError(f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise ScriptError("invalid JSON: nested too deeply", line=1) from None
    except ValueError:  # Python refuses integers of more than 4300 digits
        digits = re.search(r"[0-9]{1000,}", text)
        line = text.count("\n", 0, digits.start()) + 1 if digits else 1
        raise ScriptError("invalid JSON: a number with far too many digits", line=line) from None
    if not isinstance(data, dict):
        raise ScriptError("a JSON script must be an object with a 'scenes' list", line=1)
    for key in data:
        if key not in _JSON_TOP:
            known = ", ".join(sorted(_JSON_TOP))
            raise ScriptError(
                f"unknown key {key!r} (known keys: {known})", line=_key_line(text, key)
            )
    raw_scenes = data.get("scenes")
    if not isinstance(raw_scenes, list) or not raw_scenes:
        raise ScriptError(
            "'scenes' must be a non-empty list of scenes", line=_key_line(text, "scenes")
        )
    lines = _array_item_lines(text, len(raw_scenes))
    scenes = tuple(
        _json_scene(item, number, lines[number - 1])
        for number, item in enumerate(raw_scenes, start=1)
    )
    aspect = None
    if data.get("aspect") is not None:
        try:
            aspect = Aspect.parse(_json_str(data, "aspect", _key_line(text, "aspect"), None))
        except ValueError as exc:
            raise ScriptError(str(exc), line=_key_line(text, "aspect")) from None
    return Script(
        title=_json_str(data, "title", _key_line(text, "title"), None) or default_title,
        voice=_json_str(data, "voice", _key_line(text, "voice"), None) or None,
        aspect=aspect,
        negative_prompt=_json_str(data, "negative_prompt", _key_line(text, "negative_prompt"), None)
        or None,
        scenes=scenes,
    )


def _json_scene(item: Any, number: int, line: int) -> Scene:
    if not isinstance(item, dict):
        raise ScriptError("each scene must be an object", line=line, scene=number)
    for key in item:
        if key not in _JSON_SCENE:
            known = ", ".join(sorted(_JSON_SCENE))
            raise ScriptError(f"unknown key {key!r} (known: {known})", line=line, scene=number)
    narration = _json_str(item, "narration", line, number).strip()
    if not narration:
        raise ScriptError("this scene has no 'narration'", line=line, scene=number)
    seed = item.get("seed")
    if seed is not None and (
        not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX
    ):
        raise ScriptError(
            f"'seed' must be a whole number from 0 to {SEED_MAX}", line=line, scene=number
        )
    media = None
    if "media" in item:
        media = _json_str(item, "media", line, number).strip()
        if not media:
            raise ScriptError("'media' is empty", line=line, scene=number)
        extra = next((key for key in ("image_prompt", "negative_prompt", "seed")
                      if item.get(key) is not None), None)  # fmt: skip
        if extra is not None:
            raise ScriptError(f"{extra!r} has no use in a scene with its own 'media': remove one",
                              line=line, scene=number)  # fmt: skip
    return Scene(
        number=number,
        narration=narration,
        image_prompt=_json_str(item, "image_prompt", line, number).strip() or narration,
        negative_prompt=_json_str(item, "negative_prompt", line, number).strip() or None,
        voice=_json_str(item, "voice", line, number).strip() or None,
        seed=seed,
        media=media,
        line=line,
    )


def _json_str(data: dict[str, Any], key: str, line: int, scene: int | None) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ScriptError(f"{key!r} must be a string", line=line, scene=scene)
    return clean_text(value)


def _key_line(text: str, key: str) -> int:
    match = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _array_item_lines(text: str, count: int) -> list[int]:
    """The line each element of the top-level "scenes" array starts on."""
    decoder = json.JSONDecoder()
    match = re.search(r'"scenes"\s*:\s*\[', text)
    lines: list[int] = []
    pos = match.end() if match else -1
    while match and len(lines) < count:
        while pos < len(text) and text[pos] in " \t\n,":
            pos += 1
        try:
            _, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            break
        lines.append(text.count("\n", 0, pos) + 1)
        pos = end
    fallback = lines[-1] if lines else 1
    return lines + [fallback] * (count - len(lines))


# ---------------------------------------------------------------- limits


def _check_limits(script: Script, limits: LimitsConfig) -> None:
    if len(script.scenes) > limits.max_scenes:
        extra = script.scenes[limits.max_scenes]
        raise ScriptError(
            f"too many scenes: {len(script.scenes)}; the limit is {limits.max_scenes}",
            line=extra.line,
            scene=extra.number,
        )
    for scene in script.scenes:
        if len(scene.narration) > limits.max_chars_per_scene:
            raise ScriptError(
                f"the narration is {len(scene.narration):,} characters; "
                f"the limit is {limits.max_chars_per_scene:,} per scene",
                line=scene.line,
                scene=scene.number,
            )


# ---------------------------------------------------------------- writing


def to_markdown(script: Script) -> str:
    """`script` as reelbot's Markdown: parsing the result gives the same script back (line
    numbers aside). Each scene's narration is one line: a wrapped line could start with a
    word that reads as a key ("image: ...")."""
    lines = [f"# {script.title}"]
    header = [("voice", script.voice), ("aspect", script.aspect and str(script.aspect)),
              ("negative_prompt", script.negative_prompt)]  # fmt: skip
    lines += [f"{key}: {value}" for key, value in header if value]
    for scene in script.scenes:
        lines += ["", f"## {scene.number}"]
        if scene.media is not None:
            lines.append(f"media: {scene.media}")
        elif scene.image_prompt != scene.narration:
            lines.append(f"image: {scene.image_prompt}")
        if scene.negative_prompt:
            lines.append(f"negative: {scene.negative_prompt}")
        if scene.seed is not None:
            lines.append(f"seed: {scene.seed}")
        if scene.voice:
            lines.append(f"voice: {scene.voice}")
        lines.append(scene.narration)
    return "\n".join(lines) + "\n"
