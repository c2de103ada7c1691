"""`/draft topic:`: a chat model writes a first script (`pipeline/draft.py`), read by reelbot's
own parser and sent back to the model once with the parser's words if it cannot be used.

    /draft topic: [scenes] [aspect]  →  (ephemeral) the draft as a .md file
                                         [▶️ Render] [✏️ Edit]

The draft is the message's attachment, and nothing else keeps it: ▶️ Render reads it back from
the message the button is on and queues it as `/render` would, for whoever clicks (with
/render's checks); ✏️ Edit opens the paste form filled with it (up to the form's 4000
characters; a longer draft is edited as a file: download it, edit it, `/render script:`). The
buttons are `DynamicItem`s, so they keep working after a restart.

Without `[llm] base_url` in the config, /draft says what to configure, and nothing else changes.
"""

from __future__ import annotations

import io
import re
from typing import Any, Literal, Self, cast

import discord
from discord import app_commands
from discord.ext import commands

from pipeline.aspect import Aspect
from pipeline.draft import DEFAULT_SCENES, MAX_TOPIC_CHARS, draft_script
from pipeline.errors import ReelbotError

from ..answers import answer
from ..app import ReelBot
from ..checks import check_bot_can_post, check_render_allowed, check_render_rate_limit
from ..render_form import MODAL_MAX_CHARS
from ..store import JobOptions
from ..text import plain, plural
from .render import RenderCog

__all__ = ["NOT_CONFIGURED", "DraftCog", "EditDraftButton", "RenderDraftButton", "setup"]

NOT_CONFIGURED = (
    "Drafting isn't set up on this bot. Whoever runs it can turn it on: set `[llm] base_url` "
    "(and `model`) in its config to any OpenAI-compatible chat server (OpenAI, Together, "
    "Ollama, vLLM), and `LLM_API_KEY` if that server wants a key."
)
MAX_DRAFT_SCENES = 60  # the command's range; `[limits] max_scenes` may say fewer
DRAFT_MAX_BYTES = 256 * 1024  # what a draft attachment read back may be (it is the bot's own)

Interaction = discord.Interaction[ReelBot]
AnyInteraction = discord.Interaction[Any]


class DraftButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"(?!)"):
    """A button on a draft message (no state of its own: the draft is the message's file);
    its callback turns any error into an answer."""

    def __init__(self) -> None:
        super().__init__(self.button())

    @classmethod
    def button(cls) -> discord.ui.Button[Any]:
        raise NotImplementedError

    @classmethod
    async def from_custom_id(
        cls, interaction: AnyInteraction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls()

    async def callback(self, interaction: AnyInteraction) -> None:
        bot = cast(ReelBot, interaction.client)
        try:
            await self.act(bot, interaction)
        except Exception as exc:
            await bot.report_error(interaction, exc)

    async def act(self, bot: ReelBot, interaction: Interaction) -> None:
        raise NotImplementedError


class RenderDraftButton(DraftButton, template=r"reelbot:draft:render"):
    @classmethod
    def button(cls) -> discord.ui.Button[Any]:
        return discord.ui.Button(
            label="Render", emoji="▶️", style=discord.ButtonStyle.success,
            custom_id="reelbot:draft:render",
        )  # fmt: skip

    async def act(self, bot: ReelBot, interaction: Interaction) -> None:
        await _may_render(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        text, filename = await _draft_of(interaction)
        await _render_cog(bot).queue_render(interaction, text, filename, JobOptions())


class EditDraftButton(DraftButton, template=r"reelbot:draft:edit"):
    @classmethod
    def button(cls) -> discord.ui.Button[Any]:
        return discord.ui.Button(label="Edit", emoji="✏️", custom_id="reelbot:draft:edit")

    async def act(self, bot: ReelBot, interaction: Interaction) -> None:
        await _may_render(interaction)
        text, filename = await _draft_of(interaction)
        if len(text) > MODAL_MAX_CHARS:
            await answer(
                interaction,
                f"This draft is {len(text):,} characters, more than the form's "
                f"{MODAL_MAX_CHARS:,}: download {plain(filename, 100)} above, edit it, and "
                "render it with `/render script:`.",
            )
            return
        form = await _render_cog(bot).form(interaction, JobOptions(), text=text)
        await interaction.response.send_modal(form)


BUTTONS: tuple[type[DraftButton], ...] = (RenderDraftButton, EditDraftButton)


class DraftCog(commands.Cog, name="Draft"):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*BUTTONS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*BUTTONS)

    @app_commands.command(name="draft", description="Have a chat model write a first script")
    @app_commands.describe(
        topic="What the video is about, in a sentence or two",
        scenes=f"How many scenes (default {DEFAULT_SCENES})",
        aspect="Frame shape the pictures are composed for (default: the server's)",
    )
    @app_commands.guild_only()
    async def draft(
        self,
        interaction: Interaction,
        topic: app_commands.Range[str, 1, MAX_TOPIC_CHARS],
        scenes: app_commands.Range[int, 1, MAX_DRAFT_SCENES] | None = None,
        aspect: Literal["9:16", "16:9", "1:1"] | None = None,
    ) -> None:
        settings = self.bot.settings
        if not settings.llm.base_url:
            await answer(interaction, NOT_CONFIGURED)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        draft = await draft_script(
            topic, settings, self.bot.runner.client, scenes=scenes or DEFAULT_SCENES,
            aspect=Aspect.parse(aspect) if aspect else None,
        )  # fmt: skip
        script = draft.script
        filename = f"{_slug(script.title)}.md"
        retried = " (its first try was sent back once: it could not be used)" * (draft.attempts > 1)
        text = (
            f"A draft of **{plain(script.title, 150)}**: {plural(len(script.scenes), 'scene')}"
            f", written by {plain(draft.model, 60)}{retried}. **Render** makes it as it is; "
            f"**Edit** opens it in the form (or download {filename}, edit it, and use "
            "`/render script:`)."
        )
        view = discord.ui.View(timeout=None)
        view.add_item(RenderDraftButton())
        view.add_item(EditDraftButton())
        file = discord.File(io.BytesIO(draft.text.encode("utf-8")), filename=filename)
        await interaction.followup.send(text, file=file, view=view, ephemeral=True)


async def _may_render(interaction: Interaction) -> None:
    """/render's own checks, for a render started from a draft's button."""
    if interaction.guild_id is None:
        raise ReelbotError("Drafts are rendered in a server, not in direct messages")
    for check in (check_render_allowed, check_bot_can_post, check_render_rate_limit):
        await check(interaction)


async def _draft_of(interaction: Interaction) -> tuple[str, str]:
    """The draft on the message the button is on: its text and file name."""
    message = interaction.message
    found = [a for a in (message.attachments if message else []) if a.filename.endswith(".md")]
    if not found or found[0].size > DRAFT_MAX_BYTES:
        raise ReelbotError("This message has no draft any more; run /draft again")
    try:
        data = await found[0].read()
    except discord.HTTPException:
        raise ReelbotError("I could not read the draft back from Discord; try again") from None
    return data.decode("utf-8", errors="replace"), found[0].filename


def _render_cog(bot: ReelBot) -> RenderCog:
    cog = bot.get_cog(RenderCog.__cog_name__)
    if not isinstance(cog, RenderCog):
        raise RuntimeError("the render feature is not loaded")
    return cog


def _slug(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "-".join(words)[:60].strip("-") or "draft"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(DraftCog(cast(ReelBot, bot)))
