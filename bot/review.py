"""Scene review in the render's thread: Regenerate, Edit prompt, Approve — and Approve all on
the progress message of a job waiting for review.

    scene message (thread)    [🔁 Regenerate] [✏️ Edit prompt] [✅ Approve]   (Approve: review jobs)
    progress message          [✅ Approve all]                               (while in review)

The buttons are `DynamicItem`s, registered once in `setup_hook`: the custom_id carries the
job, the scene and the version of the scene the message shows (`reelbot:regen:12:3:2`), and
every click reads the store, never memory, so a button keeps working after a restart. A click
on a version that is not the scene's current one any more (a double click, or an old message)
is told so instead of acting twice: the store changes a scene only if it is still at the
clicked version (see `Store.revise_scene`), and clicks on one scene also queue on an
in-process lock.

Only the job's requester or a member with a `[discord] reviewer_role_ids` role may press them;
anyone else gets an ephemeral refusal. Every click is answered at once (a modal, or an
ephemeral "thinking…" followed by what happened).
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

import discord

from pipeline.errors import ReelbotError

from .answers import answer
from .checks import Refusal, has_any_role
from .config import DiscordConfig
from .jobs import Approval, JobNotFound, JobRunner
from .store import Job, JobState, SceneRecord, Store

if TYPE_CHECKING:
    from .app import ReelBot
    from .presenter import Presenters

__all__ = [
    "ApproveAllButton",
    "ApproveButton",
    "EditPromptButton",
    "PromptModal",
    "RegenerateButton",
    "SceneKey",
    "SceneReview",
    "approve_all_view",
    "may_review",
    "scene_buttons",
    "scene_embed",
    "scene_filename",
]

log = logging.getLogger(__name__)

PROMPT_MAX = 4000  # Discord's limit for one text input
_SCENE = r"(?P<job>\d+):(?P<scene>\d+):(?P<version>\d+)"

Interaction = discord.Interaction[Any]


@dataclass(frozen=True)
class SceneKey:
    """What a scene button is about: one version of one scene of one job."""

    job_id: int
    scene: int
    version: int

    @classmethod
    def of(cls, match: re.Match[str]) -> SceneKey:
        return cls(int(match["job"]), int(match["scene"]), int(match["version"]))

    def custom_id(self, action: str) -> str:
        return f"reelbot:{action}:{self.job_id}:{self.scene}:{self.version}"


# ------------------------------------------------------------ the scene message


def scene_filename(scene: int, version: int, suffix: str = ".png") -> str:
    """Version 1 keeps the plain name; later versions get their own (no stale client cache)."""
    tail = f"-v{version}" if version > 1 else ""
    return f"scene-{scene:02d}{tail}{suffix or '.png'}"


def scene_embed(job: Job, record: SceneRecord, *, filename: str) -> discord.Embed:
    """A scene's thread message: its image, prompt, negative prompt, seed and version (and,
    for a review job, whether it is approved)."""
    embed = discord.Embed(
        title=f"Scene {record.number}", description=record.image_prompt[:4000] or "—"
    )
    embed.add_field(
        name="Negative prompt", value=(record.negative_prompt or "—")[:1000], inline=False
    )
    embed.add_field(name="Seed", value=str(record.seed), inline=True)
    embed.add_field(name="Version", value=str(record.version), inline=True)
    if job.options.review:
        status = "✅ Approved" if record.approved else "👀 Waiting for approval"
        embed.add_field(name="Review", value=status, inline=True)
    embed.set_image(url=f"attachment://{filename}")
    return embed


def scene_buttons(job: Job, record: SceneRecord) -> discord.ui.View:
    key = SceneKey(job.id, record.number, record.version)
    view = discord.ui.View(timeout=None)
    view.add_item(RegenerateButton.for_key(key))
    view.add_item(EditPromptButton.for_key(key))
    if job.options.review:
        view.add_item(ApproveButton.for_key(key, approved=record.approved))
    return view


def approve_all_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ApproveAllButton(job_id))
    return view


# ------------------------------------------------------------ the buttons


def _button(label: str, emoji: str, custom_id: str, **extra: Any) -> discord.ui.Button[Any]:
    style = extra.pop("style", discord.ButtonStyle.secondary)
    return discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id, **extra)


class _SceneButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"(?!)"):
    """A button about one version of one scene; its custom id carries the SceneKey. The
    never-matching template keeps this base out of the dispatch; subclasses set their own."""

    def __init__(self, key: SceneKey, button: discord.ui.Button[Any]) -> None:
        super().__init__(button)
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls.for_key(SceneKey.of(match))

    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        raise NotImplementedError


class RegenerateButton(_SceneButton, template=rf"reelbot:regen:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        return cls(key, _button("Regenerate", "🔁", key.custom_id("regen")))

    async def callback(self, interaction: Interaction) -> None:
        await _review(interaction).regenerate(interaction, self.key)


class EditPromptButton(_SceneButton, template=rf"reelbot:edit:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        return cls(key, _button("Edit prompt", "✏️", key.custom_id("edit")))

    async def callback(self, interaction: Interaction) -> None:
        await _review(interaction).edit_prompt(interaction, self.key)


class ApproveButton(_SceneButton, template=rf"reelbot:approve:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey, *, approved: bool = False) -> Self:
        label = "Approved" if approved else "Approve"
        button = _button(label, "✅", key.custom_id("approve"),
                         style=discord.ButtonStyle.success, disabled=approved)  # fmt: skip
        return cls(key, button)

    async def callback(self, interaction: Interaction) -> None:
        await _review(interaction).approve(interaction, self.key)


class ApproveAllButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"reelbot:approve-all:(?P<job>\d+)"
):
    def __init__(self, job_id: int) -> None:
        custom_id = f"reelbot:approve-all:{job_id}"
        button = _button("Approve all", "✅", custom_id, style=discord.ButtonStyle.success)
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(int(match["job"]))

    async def callback(self, interaction: Interaction) -> None:
        await _review(interaction).approve_all(interaction, self.job_id)


class PromptModal(discord.ui.Modal):
    """Edit prompt: the scene's prompt and negative prompt, filled in."""

    def __init__(self, review: SceneReview, key: SceneKey, record: SceneRecord) -> None:
        super().__init__(
            title=f"Scene {key.scene}: edit the prompt"[:45],
            timeout=15 * 60,
            custom_id=key.custom_id("prompt"),
        )
        self.review = review
        self.key = key
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label="Prompt",
            style=discord.TextStyle.paragraph,
            default=record.image_prompt[:PROMPT_MAX],
            max_length=PROMPT_MAX,
            custom_id="review:prompt",
        )
        self.negative: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label="Negative prompt (what the image must not show)",
            style=discord.TextStyle.paragraph,
            default=record.negative_prompt[:PROMPT_MAX],
            max_length=PROMPT_MAX,
            required=False,
            custom_id="review:negative",
        )
        self.add_item(self.prompt)
        self.add_item(self.negative)

    async def on_submit(self, interaction: Interaction) -> None:
        await self.review.submit_prompt(
            interaction, self.key, self.prompt.value, self.negative.value
        )

    # discord.py's own Modal.on_error drops BaseView's `item` argument; same here.
    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await _bot(interaction).report_error(interaction, error)


def _bot(interaction: Interaction) -> ReelBot:
    return cast("ReelBot", interaction.client)


def _review(interaction: Interaction) -> SceneReview:
    return _bot(interaction).review


def may_review(user: discord.abc.User | discord.Member, job: Job, config: DiscordConfig) -> bool:
    """The requester, or a member with a reviewer role."""
    return user.id == job.user_id or has_any_role(user, config.reviewer_role_ids)


# ------------------------------------------------------------ what a click does


class SceneReview:
    """The four review actions, from a click to the store, the queue and the messages."""

    def __init__(
        self,
        *,
        client: discord.Client,
        store: Store,
        runner: JobRunner,
        presenters: Presenters,
        config: DiscordConfig,
    ) -> None:
        self.client = client
        self.store = store
        self.runner = runner
        self.presenters = presenters
        self.config = config
        # One click per scene at a time in this process (the store is the real guard); a
        # lock lives while someone holds or waits for it.
        self._locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def regenerate(self, interaction: Interaction, key: SceneKey) -> None:
        try:
            job, _ = await self._allowed(interaction, key.job_id, key.scene)
            await interaction.response.defer(ephemeral=True, thinking=True)
            async with self._lock(key):
                record = await self.runner.revise_scene(
                    key.job_id, key.scene, key.version, new_seed=True
                )
            self._requeued(job, f"Regenerating scene {key.scene} (new seed)", interaction)
            await answer(
                interaction,
                f"Regenerating scene {key.scene}: version {record.version}, seed {record.seed}. "
                "The new image replaces this one in the thread when it is ready"
                f"{self._afterwards(job)}.",
            )
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)

    async def edit_prompt(self, interaction: Interaction, key: SceneKey) -> None:
        try:
            job, record = await self._allowed(interaction, key.job_id, key.scene)
            shown = record.posted_version if job.state is JobState.FAILED else None
            if key.version not in (record.version, shown):  # not the version it would edit
                raise await self.runner.review_refusal(key.job_id, key.scene, key.version)
            await interaction.response.send_modal(PromptModal(self, key, record))
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)

    async def submit_prompt(
        self, interaction: Interaction, key: SceneKey, prompt: str, negative: str
    ) -> None:
        try:
            job, record = await self._allowed(interaction, key.job_id, key.scene)
            prompt, negative = prompt.strip(), negative.strip()
            if not prompt:
                raise ReelbotError("The prompt can't be empty: describe the image to make.")
            if (prompt, negative) == (record.image_prompt, record.negative_prompt):
                raise ReelbotError(f"Nothing changed: scene {key.scene} keeps its prompt.")
            await interaction.response.defer(ephemeral=True, thinking=True)
            async with self._lock(key):
                revised = await self.runner.revise_scene(
                    key.job_id, key.scene, key.version, prompt=prompt, negative=negative
                )
            self._requeued(job, f"Re-rendering scene {key.scene} (prompt edited)", interaction)
            await answer(
                interaction,
                f"Re-rendering scene {key.scene} with the new prompt (version {revised.version}, "
                f"same seed {revised.seed}){self._afterwards(job)}.",
            )
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)

    async def approve(self, interaction: Interaction, key: SceneKey) -> None:
        try:
            job, _ = await self._allowed(interaction, key.job_id, key.scene)
            await interaction.response.defer(ephemeral=True, thinking=True)
            async with self._lock(key):
                approval = await self.runner.approve_scene(key.job_id, key.scene, key.version)
            await self._redraw_scenes(job, [key.scene])
            await self._approved(interaction, job, approval, f"Scene {key.scene} approved")
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)

    async def approve_all(self, interaction: Interaction, job_id: int) -> None:
        try:
            job = await self._job(interaction, job_id)
            await interaction.response.defer(ephemeral=True, thinking=True)
            numbers, approval = await self.runner.approve_all(job_id)
            await self._redraw_scenes(job, numbers)
            scenes = ", ".join(map(str, numbers)) or "none left"
            await self._approved(interaction, job, approval, f"Approved scenes: {scenes}")
        except Exception as exc:
            await _bot(interaction).report_error(interaction, exc)

    # ------------------------------------------------------------ helpers

    async def _job(self, interaction: Interaction, job_id: int) -> Job:
        job = await self.store.get_job(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            raise JobNotFound(f"job #{job_id} no longer exists")
        if not may_review(interaction.user, job, self.config):
            raise Refusal(
                f"Only <@{job.user_id}>, who started job #{job.id}, or a reviewer can review "
                "its scenes."
            )
        return job

    async def _allowed(
        self, interaction: Interaction, job_id: int, number: int
    ) -> tuple[Job, SceneRecord]:
        job = await self._job(interaction, job_id)
        record = await self.store.scene(job_id, number)
        if record is None:
            raise JobNotFound(f"job #{job_id} has no scene {number}")
        return job, record

    def _lock(self, key: SceneKey) -> asyncio.Lock:
        lock = self._locks.get((key.job_id, key.scene))
        if lock is None:
            lock = self._locks[key.job_id, key.scene] = asyncio.Lock()
        return lock

    def _requeued(self, job: Job, detail: str, interaction: Interaction) -> None:
        """The job is back in the queue: show it queued, then let the runner take it."""
        self.presenters.requeued(job, f"{detail}, asked by <@{interaction.user.id}>.")
        self.runner.wake()

    def _afterwards(self, job: Job) -> str:
        if job.options.review:
            return "; approve it there when you like it"
        return "; then the video is joined again and posted as a new version"

    async def _approved(
        self, interaction: Interaction, job: Job, approval: Approval, what: str
    ) -> None:
        if approval.queued:
            self._requeued(job, "Every scene is approved: making the video", interaction)
            text = f"{what}. Every scene is approved: the video is being made."
        else:
            fresh = await self.store.get_job(job.id)
            if fresh is not None:
                await self.presenters.review_changed(fresh)
            text = f"{what} ({approval.approved} of {approval.total} scenes approved)."
        await answer(interaction, text)

    async def _redraw_scenes(self, job: Job, numbers: list[int]) -> None:
        """Show the approval on each scene's message (its image stays as it is)."""
        channel = self.client.get_partial_messageable(
            job.thread_id or job.channel_id,
            guild_id=job.guild_id,
            type=discord.ChannelType.public_thread if job.thread_id else None,
        )
        for number in numbers:
            record = await self.store.scene(job.id, number)
            if record is None or record.image_message_id is None:
                continue
            if record.posted_version != record.version:
                continue  # a newer version is on its way; its message is drawn when it comes
            suffix = Path(record.image).suffix if record.image else ".png"  # the image's type
            filename = scene_filename(number, record.version, suffix)
            embed = scene_embed(job, record, filename=filename)
            try:
                await channel.get_partial_message(record.image_message_id).edit(
                    embed=embed, view=scene_buttons(job, record)
                )
            except discord.HTTPException as exc:
                log.warning("job %d: could not redraw scene %d's message: %s", job.id, number, exc)
