"""`/settings`: presets for `/render`, a person's own and a server's (`bot/presets.py`).

    /settings mine    voice aspect captions review style negative music   (yours, everywhere)
    /settings server  (the same)                (this server's: managers and moderators only)
    /settings show                              what a render of yours here uses, and from where
    /settings clear   level setting             remove one setting, or all of a level's

`/render`'s own options win over your settings, which win over the server's. A command with
no option shows that level's settings. The answers are ephemeral.
"""

from __future__ import annotations

import logging
from typing import Literal, cast

import discord
from discord import app_commands
from discord.ext import commands

from pipeline.cache import ArtifactCache
from pipeline.errors import ReelbotError
from pipeline.text import clean_text

from ..answers import answer
from ..app import ReelBot
from ..checks import is_moderator
from ..errors import Refusal
from ..presets import Applied, Level, Presets, Setting, describe
from ..text import plain
from ..uploads import check_music, fetch_music
from ..voice_choices import VOICE_MAX_CHARS, VoiceChoices

__all__ = ["SettingsCog", "settings_embed", "setup"]

Interaction = discord.Interaction[ReelBot]
log = logging.getLogger(__name__)
STYLE_MAX_CHARS = 200
NEGATIVE_MAX_CHARS = 300
NAMES = {
    Setting.VOICE: "Voice",
    Setting.ASPECT: "Aspect",
    Setting.CAPTIONS: "Captions",
    Setting.REVIEW: "Review first",
    Setting.STYLE: "Image style",
    Setting.NEGATIVE: "Negative prompt",
    Setting.MUSIC: "Music",
}
UNSET = {  # what a render uses when no level sets it
    Setting.VOICE: "the script's, else the bot's default",
    Setting.ASPECT: "the script's, else the bot's default",
    Setting.CAPTIONS: "the bot's default",
    Setting.REVIEW: "off",
    Setting.STYLE: "the prompts as written",
    Setting.NEGATIVE: "the script's and the bot's only",
    Setting.MUSIC: "the bot's default, if any",
}
DESCRIBE = {
    "voice": "Narration voice; start typing to pick",
    "aspect": "Frame shape",
    "captions": "Burn captions into the video",
    "review": "Approve each scene's image before the video is made",
    "style": "Words added to every image prompt, e.g. 'watercolour, soft light'",
    "negative": "What images should avoid, e.g. 'text, watermark'",
    "music": "Background music: an mp3, m4a, aac, ogg, opus, flac or wav file",
}
Voice = app_commands.Range[str, 1, VOICE_MAX_CHARS]
Style = app_commands.Range[str, 1, STYLE_MAX_CHARS]
Negative = app_commands.Range[str, 1, NEGATIVE_MAX_CHARS]
AspectChoice = Literal["9:16", "16:9", "1:1"]
LevelChoice = Literal["mine", "server"]
SettingChoice = Literal[
    "all", "voice", "aspect", "captions", "review", "style", "negative", "music"
]


def may_set_server(interaction: Interaction) -> bool:
    """Managers (Manage Server) and the moderator roles may change a server's presets."""
    user = interaction.user
    managers = isinstance(user, discord.Member) and user.guild_permissions.manage_guild
    return managers or is_moderator(user, interaction.client.settings.discord)


class SettingsCog(commands.GroupCog, group_name="settings",
                  group_description="Your and this server's defaults for /render"):  # fmt: skip
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot
        self.cache = ArtifactCache(bot.settings.storage.data_dir / "cache")
        self.presets = Presets(bot.store, self.cache)
        self.voices = VoiceChoices(lambda: bot.runner.tts)
        super().__init__()

    async def cog_load(self) -> None:
        await self.presets.pin_music()  # a cache copied in, or pins removed by hand

    @app_commands.command(name="mine", description="Your own defaults for /render, everywhere")
    @app_commands.describe(**DESCRIBE)
    @app_commands.guild_only()
    async def mine(
        self,
        interaction: Interaction,
        voice: Voice | None = None,
        aspect: AspectChoice | None = None,
        captions: bool | None = None,
        review: bool | None = None,
        style: Style | None = None,
        negative: Negative | None = None,
        music: discord.Attachment | None = None,
    ) -> None:
        values = _values(voice, aspect, captions, review, style, negative)
        await self._save(interaction, Level.USER, interaction.user.id, values, music)

    @app_commands.command(name="server", description="This server's defaults for /render")
    @app_commands.describe(**DESCRIBE)
    @app_commands.guild_only()
    async def server(
        self,
        interaction: Interaction,
        voice: Voice | None = None,
        aspect: AspectChoice | None = None,
        captions: bool | None = None,
        review: bool | None = None,
        style: Style | None = None,
        negative: Negative | None = None,
        music: discord.Attachment | None = None,
    ) -> None:
        values = _values(voice, aspect, captions, review, style, negative)
        if (values or music is not None) and not may_set_server(interaction):
            raise Refusal(
                "Only the server's managers (Manage Server) or moderators can change its "
                "settings. `/settings mine` sets your own."
            )
        assert interaction.guild_id is not None  # guild_only
        await self._save(interaction, Level.SERVER, interaction.guild_id, values, music)

    @app_commands.command(name="show", description="What your renders here use, and from where")
    @app_commands.guild_only()
    async def show(self, interaction: Interaction) -> None:
        applied = await self.presets.applying(interaction.guild_id, interaction.user.id)
        await answer(interaction, embed=settings_embed(applied))

    @app_commands.command(name="clear", description="Remove a setting (or all) at one level")
    @app_commands.describe(level="Your own settings, or this server's",
                           setting="Which one (default: all of them)")  # fmt: skip
    @app_commands.guild_only()
    async def clear(
        self, interaction: Interaction, level: LevelChoice, setting: SettingChoice = "all"
    ) -> None:
        if level == "server" and not may_set_server(interaction):
            raise Refusal(
                "Only the server's managers (Manage Server) or moderators can change its settings."
            )
        assert interaction.guild_id is not None
        which, owner = (
            (Level.USER, interaction.user.id)
            if level == "mine"
            else (Level.SERVER, interaction.guild_id)
        )
        names = None if setting == "all" else [Setting(setting)]
        gone = await self.presets.clear(which, owner, names)
        whose = "Your" if which is Level.USER else "This server's"
        if not gone:
            await answer(interaction, f"{whose} settings had nothing to clear.")
            return
        listed = ", ".join(NAMES[s].lower() for s in gone)
        await answer(interaction, f"{whose} settings no longer set: {listed}.")

    @mine.autocomplete("voice")
    @server.autocomplete("voice")
    async def voice_choices(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The voices /render offers, matching what is typed (at most 25), within 3 s."""
        return await self.voices.matching(current)

    async def _save(
        self,
        interaction: Interaction,
        level: Level,
        owner: int,
        values: dict[Setting, str],
        music: discord.Attachment | None,
    ) -> None:
        whose = "Your" if level is Level.USER else "This server's"
        if not values and music is None:  # nothing given: show this level's settings
            held = await self.presets.get(level, owner)
            source = "your settings" if level is Level.USER else "this server's settings"
            embed = settings_embed({n: Applied(v, source) for n, v in held.items()},
                                   title=f"{whose} settings")  # fmt: skip
            await answer(interaction, embed=embed)
            return
        limit = self.bot.settings.discord.max_music_bytes
        if music is not None:
            check_music(music, limit)  # refused before anything is downloaded
            await interaction.response.defer(ephemeral=True, thinking=True)
            values[Setting.MUSIC] = str(await fetch_music(music, self.cache, limit))
        await self.presets.save(level, owner, values, by=interaction.user.id)
        listed = ", ".join(f"{NAMES[n].lower()} {_said(n, v)}" for n, v in values.items())
        await answer(interaction, f"{whose} settings now: {listed}. `/settings show` shows what "
                                  "your renders here use.")  # fmt: skip


def _values(
    voice: str | None,
    aspect: str | None,
    captions: bool | None,
    review: bool | None,
    style: str | None,
    negative: str | None,
) -> dict[Setting, str]:
    given: dict[Setting, str] = {}
    for name, text in ((Setting.VOICE, voice), (Setting.ASPECT, aspect),
                       (Setting.STYLE, style), (Setting.NEGATIVE, negative)):  # fmt: skip
        if text is not None:
            cleaned = clean_text(text)
            if not cleaned:
                raise ReelbotError(f"the {NAMES[name].lower()} has no words in it")
            given[name] = cleaned
    for name, flag in ((Setting.CAPTIONS, captions), (Setting.REVIEW, review)):
        if flag is not None:
            given[name] = "true" if flag else "false"
    return given


def _said(name: Setting, value: str) -> str:
    text = describe(name, value)
    if name in (Setting.VOICE, Setting.ASPECT):  # names: shown as typed
        return f"`{text.replace('`', '')}`"
    if name in (Setting.STYLE, Setting.NEGATIVE):
        return f"“{plain(text, 200)}”"
    return text


def settings_embed(applied: dict[Setting, Applied], *, title: str = "") -> discord.Embed:
    """Each setting, its value and where it comes from (`/render`'s options win over all)."""
    embed = discord.Embed(
        title=title or "What your renders here use", colour=discord.Colour.blurple()
    )
    lines = []
    for name in Setting:
        found = applied.get(name)
        if found is None:
            lines.append(f"**{NAMES[name]}**: not set ({UNSET[name]})")
        else:
            lines.append(f"**{NAMES[name]}**: {_said(name, found.value)} — from {found.source}")
    lines.append("")
    lines.append("Options given to `/render` win over your settings, which win over the "
                 "server's.")  # fmt: skip
    embed.description = "\n".join(lines)
    return embed


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SettingsCog(cast(ReelBot, bot)))
