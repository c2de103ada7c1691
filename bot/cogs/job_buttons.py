"""The buttons on a job's progress message, where a phone user's thumb is:

    queued, rendering, in review   [🛑 Cancel]      → to the clicker only: "Cancel job #12?"
                                                      [Yes, cancel it] [Keep it]
    failed                         [🔁 Retry]       → queued again; the cache keeps what was made
    done                           [📩 Send to me]  → the video in the clicker's DMs

Cancel and Retry are for the job's requester and moderators (`[discord] moderator_role_ids`);
anyone else is told so in one ephemeral line. Send to me is for anyone who can see the channel.

The feature owns its pieces (as `bot/cogs/review.py` does): when the cog loads it registers its
buttons (`DynamicItem`s: the job's id in the custom_id, `reelbot:cancel:12`, everything else
read from the store at the click) and hands the progress message the function that draws them
(`bot/controls.py`). A button, and the confirmation's two buttons, keep working after a
restart.

Send to me: the delivered video's file is removed from `outputs/` once it reached the channel,
so the runner makes it again from the cached clips (a stream copy; nothing is paid for again,
see `JobRunner.finished_video`), and `pipeline/fit.py` fits it into a direct message's upload
limit (10 MiB, whatever the server's is). A user whose privacy settings refuse the bot's
messages (Discord's 50007) is told why in one line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Self, cast

import discord
from discord.ext import commands

from pipeline.errors import ReelbotError
from pipeline.fit import fit_to_limit

from ..answers import answer
from ..app import ReelBot
from ..checks import may_manage
from ..delivery import REQUEST_TOO_LARGE, RETRY_SHRINK, video_filename
from ..errors import Refusal
from ..progress_embed import Phase, ProgressView
from ..store import Job, JobState
from ..text import format_size, plain

__all__ = [
    "CANCELLABLE",
    "DM_UPLOAD_LIMIT",
    "CancelButton",
    "ConfirmCancelButton",
    "JobButtonsCog",
    "KeepButton",
    "RetryButton",
    "SendToMeButton",
    "progress_buttons",
    "setup",
]

log = logging.getLogger(__name__)

# A direct message takes what anyone may upload without Nitro, whatever the server's boost.
DM_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
CANNOT_MESSAGE_USER = 50007
CANCELLABLE = frozenset({Phase.QUEUED, Phase.RUNNING, Phase.REVIEW, Phase.PAUSED})

Interaction = discord.Interaction[ReelBot]
AnyInteraction = discord.Interaction[Any]  # what discord.py's own signatures take


def _button(label: str, emoji: str | None, custom_id: str, **extra: Any) -> discord.ui.Button[Any]:
    style = extra.pop("style", discord.ButtonStyle.secondary)
    return discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id, **extra)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"(?!)"):
    """The base of every job button: its custom_id is `reelbot:<action>:<job id>`. The click
    loads the job as the store has it now (a job of another server is not found), then runs
    `act`; any error becomes an answer (`ReelBot.report_error`). The never-matching template
    keeps this base out of the dispatch."""

    action = ""
    job: Job

    def __init__(self, job_id: int) -> None:
        super().__init__(self.make(f"reelbot:{self.action}:{job_id}"))
        self.job_id = job_id

    @classmethod
    def make(cls, custom_id: str) -> discord.ui.Button[Any]:
        raise NotImplementedError

    @classmethod
    async def from_custom_id(
        cls, interaction: AnyInteraction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(int(match["job"]))

    async def interaction_check(self, interaction: AnyInteraction) -> bool:
        try:
            self.job = await _bot(interaction).store.job_here(self.job_id, interaction.guild_id)
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)
            return False
        return True

    async def callback(self, interaction: AnyInteraction) -> None:
        try:
            await self.act(_cog(interaction), interaction)
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)

    async def act(self, cog: JobButtonsCog, interaction: Interaction) -> None:
        raise NotImplementedError


class CancelButton(JobButton, template=r"reelbot:cancel:(?P<job>\d+)"):
    action = "cancel"

    @classmethod
    def make(cls, custom_id: str) -> discord.ui.Button[Any]:
        return _button("Cancel", "🛑", custom_id)

    async def act(self, cog: JobButtonsCog, interaction: Interaction) -> None:
        await cog.ask_to_cancel(interaction, self.job)


class ConfirmCancelButton(JobButton, template=r"reelbot:cancel-yes:(?P<job>\d+)"):
    action = "cancel-yes"

    @classmethod
    def make(cls, custom_id: str) -> discord.ui.Button[Any]:
        return _button("Yes, cancel it", None, custom_id, style=discord.ButtonStyle.danger)

    async def act(self, cog: JobButtonsCog, interaction: Interaction) -> None:
        await cog.cancel(interaction, self.job)


class KeepButton(JobButton, template=r"reelbot:cancel-keep:(?P<job>\d+)"):
    action = "cancel-keep"

    @classmethod
    def make(cls, custom_id: str) -> discord.ui.Button[Any]:
        return _button("Keep it", None, custom_id)

    async def act(self, cog: JobButtonsCog, interaction: Interaction) -> None:
        await interaction.response.edit_message(
            content=f"Job #{self.job.id} keeps going.", view=None
        )


class RetryButton(JobButton, template=r"reelbot:retry:(?P<job>\d+)"):
    action = "retry"

    @classmethod
    def make(cls, custom_id: str) -> discord.ui.Button[Any]:
        return _button("Retry", "🔁", custom_id, style=discord.ButtonStyle.primary)

    async def act(self, cog: JobButtonsCog, interaction: Interaction) -> None:
        await cog.retry(interaction, self.job)


class SendToMeButton(JobButton, template=r"reelbot:send:(?P<job>\d+)"):
    action = "send"

    @classmethod
    def make(cls, custom_id: str) -> discord.ui.Button[Any]:
        return _button("Send to me", "📩", custom_id)

    async def act(self, cog: JobButtonsCog, interaction: Interaction) -> None:
        await cog.send_to(interaction, self.job)


BUTTONS: tuple[type[JobButton], ...] = (
    CancelButton,
    ConfirmCancelButton,
    KeepButton,
    RetryButton,
    SendToMeButton,
)


def progress_buttons(view: ProgressView) -> list[discord.ui.Item[Any]]:
    """Cancel while the job is not over; Retry once it failed; Send to me once it is done."""
    if view.phase in CANCELLABLE:
        return [CancelButton(view.job_id)]
    if view.phase is Phase.FAILED:
        return [RetryButton(view.job_id)]
    if view.phase is Phase.DONE:
        return [SendToMeButton(view.job_id)]
    return []


def _bot(interaction: AnyInteraction) -> ReelBot:
    return cast(ReelBot, interaction.client)


def _cog(interaction: AnyInteraction) -> JobButtonsCog:
    cog = _bot(interaction).get_cog(JobButtonsCog.__cog_name__)
    if not isinstance(cog, JobButtonsCog):
        raise RuntimeError("the job buttons are not loaded")
    return cog


# ------------------------------------------------------------ what a click does


class JobButtonsCog(commands.Cog, name="JobButtons"):
    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot
        self._sending = asyncio.Semaphore(1)  # one copy of a video made at a time

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*BUTTONS)
        self.bot.presenters.controls.progress.append(progress_buttons)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*BUTTONS)
        self.bot.presenters.controls.progress.remove(progress_buttons)

    def _manageable(self, interaction: Interaction, job: Job, verb: str) -> None:
        if not may_manage(interaction.user, job, self.bot.settings.discord):
            raise Refusal(f"Only <@{job.user_id}>, who started job #{job.id}, or a moderator "
                          f"can {verb} it.")  # fmt: skip

    # ------------------------------------------------------------ Cancel

    async def ask_to_cancel(self, interaction: Interaction, job: Job) -> None:
        self._manageable(interaction, job, "cancel")
        if not job.state.active:
            raise ReelbotError(f"job #{job.id} is already {job.state.value}")
        confirm = discord.ui.View(timeout=None)
        confirm.add_item(ConfirmCancelButton(job.id))
        confirm.add_item(KeepButton(job.id))
        await interaction.response.send_message(
            f"Cancel job #{job.id} (**{plain(job.title, 80)}**)? The scenes made so far stay "
            "in the cache for a later render.",
            view=confirm,
            ephemeral=True,
        )

    async def cancel(self, interaction: Interaction, job: Job) -> None:
        self._manageable(interaction, job, "cancel")  # checked again: roles change
        if not job.state.active:
            raise ReelbotError(f"job #{job.id} is already {job.state.value}")
        # Stopping a running render waits for its processes to be killed: answer first.
        await interaction.response.edit_message(content=f"Cancelling job #{job.id}…", view=None)
        cancelled = await self.bot.runner.cancel(job.id, by=interaction.user.id)
        await interaction.edit_original_response(
            content=f"Cancelled job #{job.id} ({plain(cancelled.title, 80)})."
        )

    # ------------------------------------------------------------ Retry

    async def retry(self, interaction: Interaction, job: Job) -> None:
        self._manageable(interaction, job, "retry")
        await interaction.response.defer(ephemeral=True, thinking=True)
        queued = await self.bot.runner.retry(job.id)
        self.bot.presenters.requeued(queued, f"Trying again, asked by <@{interaction.user.id}>.")
        self.bot.runner.wake()
        await answer(
            interaction,
            f"Job #{job.id} is queued again. The scenes already made are reused; only the "
            "rest is made.",
        )

    # ------------------------------------------------------------ Send to me

    async def send_to(self, interaction: Interaction, job: Job) -> None:
        if job.state is not JobState.DONE:
            raise ReelbotError(f"job #{job.id} has no finished video (it is {job.state.value})")
        await interaction.response.defer(ephemeral=True, thinking=True)
        work = self.bot.settings.storage.data_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        async with self._sending:
            with tempfile.TemporaryDirectory(prefix=f"send-{job.id}-", dir=work) as folder:
                sent = await self._send_copy(interaction, job, Path(folder))
        await answer(interaction, sent)

    async def _send_copy(self, interaction: Interaction, job: Job, work: Path) -> str:
        """DM the video to the clicker; the words to answer them with."""
        video, duration = await self.bot.runner.finished_video(job, work)
        limit = DM_UPLOAD_LIMIT
        for _ in range(2):  # once more, smaller, if Discord's limit was smaller than said
            candidate = video
            if video.stat().st_size > limit:
                fitted = await fit_to_limit(
                    video, work / f"fit-{limit}.mp4", limit, duration=duration,
                    preset=self.bot.settings.video.preset,
                    timeout=self.bot.settings.video.timeout,
                )  # fmt: skip
                if fitted is None:
                    return (
                        f"**{plain(job.title, 80)}** is too long to fit in a direct message "
                        f"({format_size(limit)}), even at the lowest quality worth sending. "
                        "Save it from the channel instead."
                    )
                candidate = fitted
            try:
                await interaction.user.send(
                    self._dm_text(job, fitted=candidate != video),
                    file=discord.File(candidate, filename=video_filename(job.title, job.id)),
                )
            except discord.Forbidden as exc:
                if exc.code != CANNOT_MESSAGE_USER:
                    raise
                return (
                    "I can't send you direct messages: your privacy settings (or a block) "
                    "refuse them. Allow direct messages from this server's members, then press "
                    "Send to me again."
                )
            except discord.HTTPException as exc:
                if exc.code != REQUEST_TOO_LARGE and exc.status != 413:
                    raise
                limit = int(min(candidate.stat().st_size, limit) * RETRY_SHRINK)
                log.warning("job %d: a DM refused %s as too large; re-encoding for %s", job.id,
                            format_size(candidate.stat().st_size), format_size(limit))  # fmt: skip
                continue
            return f"Sent to your direct messages ({format_size(candidate.stat().st_size)})."
        raise ReelbotError("Discord refused the video as too large twice; try again later")

    def _dm_text(self, job: Job, *, fitted: bool) -> str:
        where = f"https://discord.com/channels/{job.guild_id}/{job.channel_id}"
        text = f"Your copy of **{plain(job.title)}** (job #{job.id}, from {where})."
        if fitted:
            text += " Re-encoded to fit a direct message's upload limit."
        return text


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(JobButtonsCog(cast(ReelBot, bot)))
