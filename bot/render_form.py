"""The phone form: `/render` without a script opens one modal with everything a render needs.

    ┌ Render a video ─────────────────────────────────────┐
    │ Script file      [ upload ]   .md, .txt or .json     │  FileUpload (0–10 files)
    │ …or paste it     [ text box, 4000 characters ]       │  TextInput
    │ Frame shape      (•) as the script says  ( ) 9:16 …  │  RadioGroup
    │ Options          [x] Captions  [ ] Review the images │  CheckboxGroup
    │ Title            [ the script's own ]                │  TextInput
    └──────────────────────────────────────────────────────┘

Five top-level components, Discord's most for a modal (tests/contracts/discord-limits.yaml),
each a `ui.Label` around its input. The options given with the command (`/render aspect:16:9`)
are filled in; voice and music, which the form has no room for, come from the command only.

An uploaded script file wins over pasted text. Of several uploaded files, the first script
file (.md, .markdown, .txt, .json) is the script; the others are the render's own media for
`media: NAME` lines. A pasted script that fills the whole text box was most likely cut off by
it (a phone keeps the first 4000 characters of a longer paste): the form says to upload it
instead of rendering half a script.

This module reads the form; `bot/cogs/render.py` checks and queues what it read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from pipeline.aspect import Aspect
from pipeline.errors import ReelbotError

from .store import JobOptions
from .text import plain

__all__ = [
    "FORM_ID",
    "MODAL_MAX_CHARS",
    "SCRIPT_EXTENSIONS",
    "FormAnswer",
    "RenderForm",
    "split_uploads",
]

FORM_ID = "reelbot:render-form"
SCRIPT_EXTENSIONS = (".md", ".markdown", ".txt", ".json")
MODAL_MAX_CHARS = 4000  # Discord's limit for one text input
MAX_FILES = 10  # Discord's most for one file upload component
TITLE_MAX = 100
AS_SCRIPT = "script"  # the aspect choice that leaves it to the script (and the server)
PLACEHOLDER = "# My video\n## Scene 1\nimage: a lighthouse at dusk\nWhat the narrator says."
ASPECTS = (
    (Aspect.PORTRAIT, "Tall 9:16", "Phones: Shorts, Reels, TikTok"),
    (Aspect.LANDSCAPE, "Wide 16:9", "YouTube, desktop screens"),
    (Aspect.SQUARE, "Square 1:1", "Feeds"),
)

Interaction = discord.Interaction[Any]


@dataclass(frozen=True)
class FormAnswer:
    """What the form was sent with, read but not yet checked."""

    script_file: discord.Attachment | None
    text: str  # pasted (stripped); "" when a file was uploaded
    media: tuple[discord.Attachment, ...]
    options: JobOptions
    text_ignored: bool = False  # both were given: the file won


Submit = Callable[[Interaction, FormAnswer], Awaitable[None]]
OnError = Callable[[Interaction, Exception], Awaitable[None]]


class RenderForm(discord.ui.Modal):
    def __init__(
        self,
        options: JobOptions,
        *,
        default_aspect: Aspect,
        captions: bool,
        on_submit: Submit,
        on_error: OnError,
        text: str = "",
    ) -> None:
        """`options`: what the command was given (filled in). `default_aspect`: the server's,
        named in the first aspect choice. `captions`: whether the Captions box starts ticked.
        `text`: a script to start from, in the text box (a draft to edit)."""
        super().__init__(title="Render a video", timeout=15 * 60, custom_id=FORM_ID)
        self.options = options
        self.prefilled = text[:MODAL_MAX_CHARS]  # a whole draft, not a paste cut off
        self._submit = on_submit
        self._error = on_error
        self.files: discord.ui.FileUpload[RenderForm] = discord.ui.FileUpload(
            custom_id="render:file", required=False, min_values=0, max_values=MAX_FILES
        )
        self.script: discord.ui.TextInput[RenderForm] = discord.ui.TextInput(
            style=discord.TextStyle.paragraph,
            custom_id="render:script",
            placeholder=PLACEHOLDER,
            default=self.prefilled or None,
            required=False,
            max_length=MODAL_MAX_CHARS,
        )
        self.aspect: discord.ui.RadioGroup[RenderForm] = discord.ui.RadioGroup(
            custom_id="render:aspect", required=True
        )
        self.aspect.add_option(
            label="As the script says",
            value=AS_SCRIPT,
            description=f"Its aspect: line, else this server's {default_aspect.value}",
            default=options.aspect is None,
        )
        for aspect, label, description in ASPECTS:
            self.aspect.add_option(label=label, value=aspect.value, description=description,
                                   default=options.aspect == aspect.value)  # fmt: skip
        self.choices: discord.ui.CheckboxGroup[RenderForm] = discord.ui.CheckboxGroup(
            custom_id="render:options",
            required=False,
            min_values=0,
            max_values=2,
            options=[
                discord.CheckboxGroupOption(
                    label="Captions", value="captions", default=captions,
                    description="The narration's words, burned into the video",
                ),
                discord.CheckboxGroupOption(
                    label="Review the images first", value="review", default=bool(options.review),
                    description="Approve each scene's picture before the video is made",
                ),
            ],
        )  # fmt: skip
        self.title_input: discord.ui.TextInput[RenderForm] = discord.ui.TextInput(
            style=discord.TextStyle.short,
            custom_id="render:title",
            placeholder="The script's own title",
            default=options.title,
            required=False,
            max_length=TITLE_MAX,
        )
        self.add_item(discord.ui.Label(
            text="Script file", component=self.files,
            description=".md, .txt or .json; add pictures or clips for media: lines",
        ))  # fmt: skip
        self.add_item(discord.ui.Label(
            text="…or paste the script", component=self.script,
            description=f"Up to {MODAL_MAX_CHARS:,} characters; upload a longer one as a file",
        ))  # fmt: skip
        self.add_item(discord.ui.Label(text="Frame shape", component=self.aspect))
        self.add_item(discord.ui.Label(text="Options", component=self.choices))
        self.add_item(discord.ui.Label(text="Title", component=self.title_input))

    def answer(self) -> FormAnswer:
        """What was sent, or a ReelbotError saying what to change."""
        script_file, media = split_uploads(self.files.values)
        text = self.script.value.strip()
        if script_file is None and not text:
            if media:
                names = ", ".join(plain(a.filename, 60) for a in media[:3])
                raise ReelbotError(
                    f"No script came with {names}: upload a .md, .txt or .json script with "
                    "them, or paste it"
                )
            raise ReelbotError("The form was empty: upload a script file or paste the script")
        pasted = self.script.value
        if script_file is None and len(pasted) >= MODAL_MAX_CHARS and pasted != self.prefilled:
            raise ReelbotError(
                f"The pasted script fills the whole text box ({MODAL_MAX_CHARS:,} characters), "
                "so its end was probably cut off: upload it as a .md or .txt file in the form "
                "instead"
            )
        aspect = self.aspect.value
        title = self.title_input.value.strip()
        options = self.options.model_copy(
            update={
                "aspect": None if aspect in (None, AS_SCRIPT) else aspect,
                "captions": "captions" in self.choices.values,
                "review": "review" in self.choices.values,
                "title": title or None,
            }
        )
        return FormAnswer(
            script_file=script_file,
            text="" if script_file is not None else text,
            media=media,
            options=options,
            text_ignored=script_file is not None and bool(text),
        )

    async def on_submit(self, interaction: Interaction) -> None:
        await self._submit(interaction, self.answer())

    # discord.py's own Modal.on_error drops BaseView's `item` argument; same here.
    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await self._error(interaction, error)


def split_uploads(
    files: Sequence[discord.Attachment],
) -> tuple[discord.Attachment | None, tuple[discord.Attachment, ...]]:
    """The first script file, and every other file (the render's own media)."""
    script = next((f for f in files if f.filename.lower().endswith(SCRIPT_EXTENSIONS)), None)
    return script, tuple(f for f in files if f is not script)
