"""A first script from a topic, written by a chat model (`reelbot draft "topic"`; the bot's
`/draft` later), in reelbot's Markdown format: a title, and per scene an image prompt and the
narration.

    topic ─ chat (pipeline/llm.py) ─→ answer ─ reelbot's own parser ─→ Script ─→ Markdown
                     ↑                                   │ a problem
                     └─── the answer and the problem ────┘ (once)

The answer is read by `parse_script`, exactly as a script a person wrote. A draft that cannot
be used — it does not parse, has another number of scenes than was asked for, a scene without
an image prompt, or names a media file — is sent back once, with the problem in the
conversation; a second failure is a `DraftError` naming it. What comes back is written out
again by `to_markdown`: clean, with the chosen aspect in its header, and sure to parse.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import httpx

from .aspect import Aspect
from .config import Settings
from .errors import DraftError, InputError, ScriptError
from .llm import ChatMessage, chat, not_configured
from .script import Script, parse_script, to_markdown
from .text import clean_text

__all__ = ["DEFAULT_SCENES", "MAX_TOPIC_CHARS", "Draft", "draft_messages", "draft_script"]

log = logging.getLogger(__name__)
DEFAULT_SCENES = 6
MAX_TOPIC_CHARS = 500
WORDS_PER_SCENE = 35  # about 12 seconds of narration: a short video's pace
_FRAMING = {
    Aspect.PORTRAIT: "a vertical (portrait, 9:16) frame",
    Aspect.LANDSCAPE: "a horizontal (landscape, 16:9) frame",
    Aspect.SQUARE: "a square (1:1) frame",
}
_FENCE = re.compile(r"^\s*```[A-Za-z]*\s*$")

SYSTEM = """\
You write scripts for reelbot, which turns a script into a narrated short video: each scene is \
one picture on screen while its narration is spoken.

Write the script in reelbot's Markdown format, exactly as in this example, and nothing else: \
no comments before or after it, no code fence.

# Why Lighthouses Flash

## 1
image: a tall white lighthouse on a rocky cliff at dusk, its beam sweeping over a stormy sea, \
cinematic light
Every lighthouse on a coast flashes in its own rhythm. Sailors read it like a name.

## 2
image: close-up of a huge Fresnel lens, rings of glass glowing with warm light, dark room
The light comes from a lens as tall as a person, turning slowly on a bath of mercury.

Rules:
- The first line is "# " and a short title.
- Each scene starts with a line "## " and its number, then one line "image: " and a prompt for \
an image generator, then the narration.
- An image prompt describes one concrete picture: the subject, the setting, the light and the \
style. No text or lettering in the picture, no real people's names, no brand logos.
- The narration is what the narrator says while that picture is shown: one to three spoken \
sentences, plain words, no stage directions, no emoji, no Markdown.
- No other lines: no "voice:", "seed:" or "media:" lines, no notes, no empty lines inside a scene.
"""


@dataclass(frozen=True)
class Draft:
    """A drafted script: the Markdown to save (or render), and what it parses to."""

    text: str
    script: Script
    model: str  # the model that wrote it, as the server names it
    attempts: int  # chat requests made: 2 when the first draft had to be sent back
    first_problem: str | None = None  # why the first draft was sent back


def draft_messages(topic: str, scenes: int, aspect: Aspect) -> list[ChatMessage]:
    """The conversation that asks for a draft."""
    request = (
        f"Topic: {topic}\n"
        f"Scenes: exactly {scenes}.\n"
        f"Compose every picture for {_FRAMING[aspect]}.\n"
        f"Narration: about {WORDS_PER_SCENE} words a scene, in the language of the topic. The "
        "first scene makes the viewer want to keep watching; the last one ends the story or "
        "leaves one clear takeaway."
    )
    return [ChatMessage("system", SYSTEM), ChatMessage("user", request)]


async def draft_script(
    topic: str,
    settings: Settings,
    client: httpx.AsyncClient,
    *,
    scenes: int = DEFAULT_SCENES,
    aspect: Aspect | None = None,
) -> Draft:
    """Ask `[llm]`'s model for a script about `topic` with `scenes` scenes for `aspect`
    (default `[video] aspect`). Raises ConfigError without `[llm] base_url`, InputError for a
    bad topic or scene count, LLMError when the server fails, DraftError when its script cannot
    be used twice over."""
    if not settings.llm.base_url:
        raise not_configured()
    topic = clean_text(topic)
    if not topic:
        raise InputError("the topic is empty: say what the video is about")
    if len(topic) > MAX_TOPIC_CHARS:
        raise InputError(f"the topic is {len(topic)} characters; at most {MAX_TOPIC_CHARS}: "
                         "say it in a sentence or two")  # fmt: skip
    limit = settings.limits.max_scenes
    if not 1 <= scenes <= limit:
        raise InputError(f"a draft has 1 to {limit} scenes ([limits] max_scenes), not {scenes}")
    aspect = aspect or settings.video.aspect
    key = settings.secrets.llm_api_key
    api_key = key.get_secret_value() if key is not None else None
    messages = draft_messages(topic, scenes, aspect)
    first_problem: str | None = None
    for attempt in (1, 2):
        answer = await chat(client, settings.llm, messages, api_key=api_key)
        try:
            script = _usable(answer.content, answer.finish_reason, scenes, settings)
        except _Unusable as exc:
            log.info("draft %d was not usable (%s); the model wrote:\n%s", attempt, exc,
                     answer.content)  # fmt: skip
            if attempt == 2:
                raise DraftError(f"the model's script could not be used, even after it was "
                                 f"told why: {exc}") from None  # fmt: skip
            first_problem = str(exc)
            messages += [
                ChatMessage("assistant", answer.content),
                ChatMessage("user", f"reelbot cannot use that script: {exc}. Write the whole "
                            "script again, in the same format, with that fixed. Answer with the "
                            "script only."),
            ]  # fmt: skip
            continue
        titled = any(line.startswith("# ") for line in _script_part(answer.content).split("\n"))
        title = script.title if titled else topic[:80]
        script = script.model_copy(update={"title": title, "aspect": aspect, "voice": None})
        text = to_markdown(script)
        final = parse_script(text, filename="draft.md", limits=settings.limits)
        return Draft(text, final, answer.model or settings.llm.model, attempt, first_problem)
    raise AssertionError("unreachable")


class _Unusable(Exception):
    """What is wrong with a draft, in words for the model (and, the second time, the user)."""


def _usable(answer: str, finish_reason: str, scenes: int, settings: Settings) -> Script:
    if finish_reason == "length":
        raise _Unusable("the answer was cut off before its end: write a shorter script")
    text = _script_part(answer)
    try:
        script = parse_script(text, filename="draft.md", limits=settings.limits)
    except ScriptError as exc:
        raise _Unusable(str(exc)) from None
    if len(script.scenes) != scenes:
        raise _Unusable(f"it has {len(script.scenes)} scenes; exactly {scenes} were asked for")
    for scene in script.scenes:
        if scene.media is not None:
            raise _Unusable(f"scene {scene.number} has a 'media:' line; give it an 'image:' "
                            "prompt instead")  # fmt: skip
        if scene.image_prompt == scene.narration:
            raise _Unusable(f"scene {scene.number} has no 'image:' line")
    # The voice is chosen at render time, and a seed by reelbot: a model's own are dropped.
    plain = tuple(s.model_copy(update={"voice": None, "seed": None}) for s in script.scenes)
    return script.model_copy(update={"scenes": plain})


def _script_part(answer: str) -> str:
    """The script in an answer: the inside of a code fence around it, and from its title on
    (a model may say a sentence before and after it)."""
    lines = answer.replace("\r\n", "\n").split("\n")
    fences = [i for i, line in enumerate(lines) if _FENCE.match(line)]
    if fences:
        end = fences[1] if len(fences) > 1 else len(lines)
        lines = lines[fences[0] + 1 : end]
    start = next((i for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "\n".join(lines[start:]).strip() + "\n"
