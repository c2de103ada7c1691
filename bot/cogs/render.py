"""`/render`: a script (an attached file, or the phone form: `bot/render_form.py`) becomes a
queued render job.

The interaction is answered at once (a modal, an ephemeral refusal, or an ephemeral
"thinking" defer before anything slow); the script is validated before it is queued, and the
progress then lives in a regular channel message (see `bot/presenter.py`), not in the
interaction response, whose token stops working after 15 minutes.

`music:` takes an audio file. Its type and size are checked before it is downloaded; it is
downloaded only once the script is known to be good, saved under its content's hash (in the
artifact cache as `music/<sha256>.<ext>`, never a name the user chose) and checked with
ffprobe.

`media1`..`media4` take the files a script names with `media: NAME` (`bot/uploaded_media.py`):
only those uploads, never a path on the bot's host; checked before anything is queued.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal, cast

import discord
from discord import app_commands
from discord.ext import commands

from pipeline.aspect import Aspect
from pipeline.cache import ArtifactCache
from pipeline.captions import captions_wanted
from pipeline.errors import ReelbotError, ScriptError

from ..admission import JobRequest
from ..answers import answer
from ..app import ReelBot
from ..checks import bot_can_post, render_allowed, render_rate_limit
from ..presets import Presets
from ..render_form import SCRIPT_EXTENSIONS, FormAnswer, RenderForm
from ..store import Job, JobOptions
from ..text import format_duration, ordinal, plain
from ..uploaded_media import receive_media
from ..uploads import check_music, fetch_music
from ..voice_choices import VOICE_MAX_CHARS, VoiceChoices

__all__ = ["RenderCog", "setup"]


Interaction = discord.Interaction[ReelBot]
log = logging.getLogger(__name__)


class RenderCog(commands.Cog):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot
        # The voices `/render voice:` suggests: the speech provider's list, kept a while.
        self.voices = VoiceChoices(lambda: bot.runner.tts)
        cache = ArtifactCache(bot.settings.storage.data_dir / "cache")
        self.presets = Presets(bot.store, cache)

    @app_commands.command(name="render", description="Turn a script into a narrated video")
    @app_commands.describe(
        script="The script as a file: .md, .txt or .json (leave it out to paste the script)",
        title="The video's title (default: the script's own)",
        aspect="Frame shape (default: the script's, else the server's)",
        voice="Narration voice for every scene (default: the script's); start typing to pick",
        review="Approve each scene's image before the video is made (default: your /settings)",
        captions="Burn captions into the video (default: your /settings, else on for 9:16)",
        music="Background music: an mp3, m4a, aac, ogg, opus, flac or wav file",
        media1="A picture or clip the script names with `media: NAME` (its file name)",
        media2="Another picture or clip the script names",
        media3="Another picture or clip the script names",
        media4="Another picture or clip the script names",
    )
    @app_commands.guild_only()
    @render_rate_limit()
    @bot_can_post()
    @render_allowed()  # checks run bottom-up: allowlists first, the rate limit last
    async def render(
        self,
        interaction: Interaction,
        script: discord.Attachment | None = None,
        title: app_commands.Range[str, 1, 100] | None = None,
        aspect: Literal["9:16", "16:9", "1:1"] | None = None,
        voice: app_commands.Range[str, 1, VOICE_MAX_CHARS] | None = None,
        review: bool | None = None,
        captions: bool | None = None,
        music: discord.Attachment | None = None,
        media1: discord.Attachment | None = None,
        media2: discord.Attachment | None = None,
        media3: discord.Attachment | None = None,
        media4: discord.Attachment | None = None,
    ) -> None:
        media = [m for m in (media1, media2, media3, media4) if m is not None]
        options = JobOptions(
            aspect=aspect,
            voice=voice,
            title=title,
            review=review,
            captions=captions,
        )
        if music is not None:
            check_music(music, self.bot.settings.discord.max_music_bytes)  # before downloading
        if script is None:  # the phone form (bot/render_form.py)
            form = await self.form(interaction, options, music, media)
            await interaction.response.send_modal(form)
            return
        self._check_attachment(script)  # refused at once, before anything is downloaded
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = _decode(await script.read())
        await self.queue_render(interaction, text, script.filename, options, music, media)

    async def form(
        self,
        interaction: Interaction,
        options: JobOptions,
        music: discord.Attachment | None = None,
        media: Sequence[discord.Attachment] = (),
        *,
        text: str = "",
    ) -> RenderForm:
        """The phone form for `options` (the command's, filled in); `text`: a script to start
        from (a draft to edit, `bot/cogs/draft.py`). Its boxes start as the clicker's render
        would go: captions and review from the presets (/settings) where the command gave none."""
        video = self.bot.settings.video
        preset = await self.presets.resolve(options, guild_id=interaction.guild_id,
                                            user_id=interaction.user.id)  # fmt: skip
        options = options.model_copy(update={"captions": preset.captions, "review": preset.review})
        captions = options.captions
        if captions is None:  # what the server's default would give (the box shows it)
            aspect = Aspect.parse(options.aspect) if options.aspect else video.aspect
            captions = captions_wanted(self.bot.settings.captions, aspect)

        async def submitted(interaction: Interaction, answer: FormAnswer) -> None:
            await self.form_submitted(interaction, answer, music, media)

        return RenderForm(options, default_aspect=video.aspect, captions=captions, text=text,
                          on_submit=submitted,
                          on_error=self.bot.report_error)  # fmt: skip

    async def form_submitted(
        self,
        interaction: Interaction,
        answer: FormAnswer,
        music: discord.Attachment | None,
        media: Sequence[discord.Attachment] = (),
    ) -> None:
        """The phone form was sent: an uploaded file wins over pasted text; the form's other
        uploads join the command's `media1..4` as the render's own media."""
        file = answer.script_file
        if file is not None:
            self._check_attachment(file)  # refused at once, before anything is downloaded
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = answer.text if file is None else _decode(await file.read())
        filename = "" if file is None else file.filename
        note = (
            f"The uploaded {plain(file.filename, 60)} was used; the pasted text was not."
            if file is not None and answer.text_ignored
            else ""
        )
        await self.queue_render(interaction, text, filename, answer.options, music,
                                [*media, *answer.media], note=note)  # fmt: skip

    @render.autocomplete("voice")
    async def voice_choices(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The provider's voices matching what is typed (at most 25), within Discord's 3 s."""
        return await self.voices.matching(current)

    def _check_attachment(self, attachment: discord.Attachment) -> None:
        if not attachment.filename.lower().endswith(SCRIPT_EXTENSIONS):
            raise ReelbotError(
                f"{attachment.filename} is not a script: attach a .md, .txt or .json file, "
                "or leave the file out to paste the script"
            )
        limit = self.bot.settings.discord.max_attachment_bytes
        if attachment.size > limit:
            raise ReelbotError(
                f"{attachment.filename} is {attachment.size:,} bytes; a script may be at most "
                f"{limit:,} bytes"
            )

    async def queue_render(
        self,
        interaction: Interaction,
        text: str,
        filename: str,
        options: JobOptions,
        music: discord.Attachment | None = None,
        media: Sequence[discord.Attachment] = (),
        *,
        note: str = "",
    ) -> None:
        """Validate and queue; the answer says where progress will appear (after `note`).
        `media`: the files the script's `media:` names refer to."""
        assert interaction.channel_id is not None  # guild_only: always in a channel
        request = JobRequest(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            script=text,
            filename=filename,
            options=options,
        )
        # A bad script is refused before the music is fetched, and read only this once.
        script = self.bot.runner.check(request)
        # What was not chosen here comes from the presets (/settings): the person's, then
        # the server's.
        options = await self.presets.resolve(options, guild_id=request.guild_id,
                                             user_id=request.user_id, script=script)  # fmt: skip
        # Pinned in the cache from its download until the job holds its own pin.
        with self.bot.runner.cache.pinning() as pin:
            received = await receive_media(script, media, self.bot.runner.cache,
                                           self.bot.settings.limits, pin=pin)  # fmt: skip
            options = received.options(options)
            if music is not None:
                saved = await fetch_music(music, self.bot.runner.cache,
                                          self.bot.settings.discord.max_music_bytes)  # fmt: skip
                options = options.model_copy(update={"music": str(saved)})
            request = dataclasses.replace(request, options=options)
            # The one way in (bot/admission.py): a refusal naming the limit, or the job, shown
            # queued. Music saved for a refused render is removed by the keep_days sweep.
            job = await self.bot.runner.submit(request, script)
        text = f"{note} {await self._queued_text(job)}{received.note}"
        await answer(interaction, text.strip())

    async def _queued_text(self, job: Job) -> str:
        entry = next((e for e in await self.bot.runner.queue() if e.job.id == job.id), None)
        when = ""
        if entry is not None:
            start = f"{ordinal(entry.position)} in line" if entry.position else "rendering now"
            when = f", {start}; done in about {format_duration(entry.estimate)}"
        text = (
            f"Queued as **job #{job.id}** ({job.scene_count} scene"
            f"{'s' if job.scene_count != 1 else ''}{when}). Progress appears in this channel, "
            "with a 🛑 Cancel button."
        )
        if job.options.review:
            text += (
                " Review is on: approve each scene's image in the thread (or regenerate it, or "
                "edit its prompt); the video is made once every scene is approved."
            )
        return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScriptError(
            "this is not UTF-8 text (is it a binary file?); save the script as UTF-8",
            line=data[: exc.start].count(b"\n") + 1,
        ) from None


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(RenderCog(cast(ReelBot, bot)))
