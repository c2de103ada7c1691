"""Scene review: 🔁 Regenerate, ✏️ Edit prompt, 🖼️ Use my picture and ✅ Approve on each scene's
message in the job's thread, and ✅ Approve all on the progress message of a job waiting for
review.

    scene message (thread)    [🔁 Regenerate] [✏️ Edit prompt] [🖼️ Use my picture] [✅ Approve]
                                                                   (Approve: review jobs only)
    progress message          [✅ Approve all]                     (while in review)

Use my picture opens a form with a file upload; the picture (or short clip) is checked and kept
as a render's own media is (`bot/uploaded_media.py`) and becomes the scene's next version, as
a regenerated image would: no image is generated for it. Regenerate or Edit prompt afterwards
makes a generated image again.

The feature owns its pieces: when the cog loads it registers its buttons (`DynamicItem`s) with
the bot and hands the job's messages the functions that draw them (`bot/controls.py`); nothing
else names them. A button's custom_id carries the job, the scene and the version of the scene
the message shows (`reelbot:regen:12:3:2`), and every click reads the store, never memory, so a
button keeps working after a restart. A click on a version that is not the scene's current one
any more (a double click, or an old message) is told so instead of acting twice: the store
changes a scene only if it is still at the clicked version (see `Store.revise_scene`), and
clicks on one scene also queue on an in-process lock.

Only the job's requester or a member with a `[discord] reviewer_role_ids` role may press them:
the buttons' shared base checks that once (`interaction_check`), and turns any error into an
answer once; each button's `act` is only about what it does. Every click is answered at once (a
modal, or an ephemeral "thinking…" followed by what happened).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from dataclasses import dataclass
from typing import Any, Self, cast

import discord
from discord.ext import commands

from pipeline.errors import ReelbotError, ScriptError

from ..answers import answer
from ..app import ReelBot
from ..checks import may_review
from ..errors import Refusal
from ..jobs import Approval
from ..progress_embed import Phase, ProgressView
from ..store import Job, JobState, SceneRecord, StoredMedia
from ..uploaded_media import receive_scene_media

__all__ = [
    "ApproveAllButton",
    "ApproveButton",
    "EditPromptButton",
    "PictureModal",
    "PromptModal",
    "RegenerateButton",
    "ReviewCog",
    "SceneKey",
    "UsePictureButton",
    "setup",
]

PROMPT_MAX = 4000  # Discord's limit for one text input
_SCENE = r"(?P<job>\d+):(?P<scene>\d+):(?P<version>\d+)"

Interaction = discord.Interaction[ReelBot]
AnyInteraction = discord.Interaction[Any]  # what discord.py's own signatures take


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


# ------------------------------------------------------------ the buttons


def _button(label: str, emoji: str, custom_id: str, **extra: Any) -> discord.ui.Button[Any]:
    style = extra.pop("style", discord.ButtonStyle.secondary)
    return discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id, **extra)


class ReviewButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"(?!)"):
    """The base of every review button. `interaction_check` lets through only a click on a
    job that still exists here by someone who may review it (and loads it); `callback` runs
    the button's `act` and turns any error into an answer (`ReelBot.report_error`). The
    never-matching template keeps this base out of the dispatch; each button sets its own."""

    job: Job  # what the click is about, as the store has it now

    def __init__(self, job_id: int, button: discord.ui.Button[Any]) -> None:
        super().__init__(button)
        self.job_id = job_id

    async def interaction_check(self, interaction: AnyInteraction) -> bool:
        try:
            await self.load(_review(interaction), interaction)
        except Exception as exc:
            await _review(interaction).bot.report_error(interaction, exc)
            return False
        return True

    async def callback(self, interaction: AnyInteraction) -> None:
        try:
            await self.act(_review(interaction), interaction)
        except Exception as exc:
            await _review(interaction).bot.report_error(interaction, exc)

    async def load(self, review: ReviewCog, interaction: Interaction) -> None:
        self.job = await review.reviewable(interaction, self.job_id)

    async def act(self, review: ReviewCog, interaction: Interaction) -> None:
        raise NotImplementedError


class SceneButton(ReviewButton, template=r"(?!)"):
    """A button about one version of one scene (its custom_id carries the SceneKey)."""

    record: SceneRecord  # the scene as the store has it now

    def __init__(self, key: SceneKey, button: discord.ui.Button[Any]) -> None:
        super().__init__(key.job_id, button)
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: AnyInteraction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls.for_key(SceneKey.of(match))

    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        raise NotImplementedError

    async def load(self, review: ReviewCog, interaction: Interaction) -> None:
        await super().load(review, interaction)
        self.record = await review.scene(self.job, self.key.scene)


class RegenerateButton(SceneButton, template=rf"reelbot:regen:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        return cls(key, _button("Regenerate", "🔁", key.custom_id("regen")))

    async def act(self, review: ReviewCog, interaction: Interaction) -> None:
        await review.regenerate(interaction, self.key, self.job)


class EditPromptButton(SceneButton, template=rf"reelbot:edit:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        return cls(key, _button("Edit prompt", "✏️", key.custom_id("edit")))

    async def act(self, review: ReviewCog, interaction: Interaction) -> None:
        await review.edit_prompt(interaction, self.key, self.job, self.record)


class UsePictureButton(SceneButton, template=rf"reelbot:picture:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey) -> Self:
        return cls(key, _button("Use my picture", "🖼️", key.custom_id("picture")))

    async def act(self, review: ReviewCog, interaction: Interaction) -> None:
        await review.use_picture(interaction, self.key, self.job, self.record)


class ApproveButton(SceneButton, template=rf"reelbot:approve:{_SCENE}"):
    @classmethod
    def for_key(cls, key: SceneKey, *, approved: bool = False) -> Self:
        label = "Approved" if approved else "Approve"
        button = _button(label, "✅", key.custom_id("approve"),
                         style=discord.ButtonStyle.success, disabled=approved)  # fmt: skip
        return cls(key, button)

    async def act(self, review: ReviewCog, interaction: Interaction) -> None:
        await review.approve(interaction, self.key, self.job)


class ApproveAllButton(ReviewButton, template=r"reelbot:approve-all:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        custom_id = f"reelbot:approve-all:{job_id}"
        button = _button("Approve all", "✅", custom_id, style=discord.ButtonStyle.success)
        super().__init__(job_id, button)

    @classmethod
    async def from_custom_id(
        cls, interaction: AnyInteraction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(int(match["job"]))

    async def act(self, review: ReviewCog, interaction: Interaction) -> None:
        await review.approve_all(interaction, self.job)


BUTTONS: tuple[type[ReviewButton], ...] = (
    RegenerateButton,
    EditPromptButton,
    UsePictureButton,
    ApproveButton,
    ApproveAllButton,
)


def scene_buttons(job: Job, record: SceneRecord) -> list[discord.ui.Item[Any]]:
    """A scene message's review buttons, for the version `record` is at."""
    key = SceneKey(job.id, record.number, record.version)
    buttons: list[discord.ui.Item[Any]] = [
        RegenerateButton.for_key(key),
        EditPromptButton.for_key(key),
        UsePictureButton.for_key(key),
    ]
    if job.options.review:
        buttons.append(ApproveButton.for_key(key, approved=record.approved))
    return buttons


def progress_buttons(view: ProgressView) -> list[discord.ui.Item[Any]]:
    """Approve all, while the job waits for review."""
    return [ApproveAllButton(view.job_id)] if view.phase is Phase.REVIEW else []


class PromptModal(discord.ui.Modal):
    """Edit prompt: the scene's prompt and negative prompt, filled in."""

    def __init__(self, key: SceneKey, record: SceneRecord) -> None:
        super().__init__(
            title=f"Scene {key.scene}: edit the prompt"[:45],
            timeout=15 * 60,
            custom_id=key.custom_id("prompt"),
        )
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

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        await _review(interaction).submit_prompt(
            interaction, self.key, self.prompt.value, self.negative.value
        )

    # discord.py's own Modal.on_error drops BaseView's `item` argument; same here.
    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await interaction.client.report_error(interaction, error)


class PictureModal(discord.ui.Modal):
    """Use my picture: one file upload."""

    def __init__(self, key: SceneKey) -> None:
        super().__init__(
            title=f"Scene {key.scene}: use my picture"[:45],
            timeout=15 * 60,
            custom_id=key.custom_id("upload"),
        )
        self.key = key
        self.upload: discord.ui.FileUpload[PictureModal] = discord.ui.FileUpload(
            custom_id="review:picture", required=True, min_values=1, max_values=1
        )
        self.add_item(
            discord.ui.Label(
                text="Your picture",
                description="PNG, JPEG or WebP (or a short MP4, MOV or WebM clip)",
                component=self.upload,
            )
        )

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        uploads = self.upload.values
        if len(uploads) != 1:
            raise ReelbotError("Upload one picture to use for the scene.")
        await _review(interaction).submit_picture(interaction, self.key, uploads[0])

    async def on_error(self, interaction: Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await interaction.client.report_error(interaction, error)


def _review(interaction: AnyInteraction) -> ReviewCog:
    cog = cast(ReelBot, interaction.client).get_cog(ReviewCog.__cog_name__)
    if not isinstance(cog, ReviewCog):
        raise RuntimeError("the review feature is not loaded")
    return cog


# ------------------------------------------------------------ what a click does


class ReviewCog(commands.Cog, name="Review"):
    """The four review actions, from a click to the store, the queue and the messages."""

    def __init__(self, bot: ReelBot) -> None:
        self.bot = bot
        # One click per scene at a time in this process (the store is the real guard); a
        # lock lives while someone holds or waits for it.
        self._locks: weakref.WeakValueDictionary[tuple[int, int], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*BUTTONS)
        controls = self.bot.presenters.controls
        controls.scene.append(scene_buttons)
        controls.progress.append(progress_buttons)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*BUTTONS)
        controls = self.bot.presenters.controls
        controls.scene.remove(scene_buttons)
        controls.progress.remove(progress_buttons)

    # ------------------------------------------------------------ the checks

    async def reviewable(self, interaction: Interaction, job_id: int) -> Job:
        """The job, if it is still here and the clicker may review its scenes."""
        job = await self.bot.store.job_here(job_id, interaction.guild_id)
        if not may_review(interaction.user, job, self.bot.settings.discord):
            raise Refusal(
                f"Only <@{job.user_id}>, who started job #{job.id}, or a reviewer can review "
                "its scenes."
            )
        return job

    async def scene(self, job: Job, number: int) -> SceneRecord:
        record = await self.bot.store.scene(job.id, number)
        if record is None:  # a forged custom_id: the job never had this scene
            raise ReelbotError(f"job #{job.id} has no scene {number}")
        return record

    # ------------------------------------------------------------ the actions

    async def regenerate(self, interaction: Interaction, key: SceneKey, job: Job) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self._lock(key):
            record = await self.bot.runner.revise_scene(
                key.job_id, key.scene, key.version, new_seed=True
            )
        self._requeued(job, f"Regenerating scene {key.scene} (new seed)", interaction)
        await answer(
            interaction,
            f"Regenerating scene {key.scene}: version {record.version}, seed {record.seed}. "
            f"The new image replaces this one in the thread when it is ready{_afterwards(job)}.",
        )

    async def edit_prompt(
        self, interaction: Interaction, key: SceneKey, job: Job, record: SceneRecord
    ) -> None:
        shown = record.posted_version if job.state is JobState.FAILED else None
        if key.version not in (record.version, shown):  # not the version it would edit
            raise await self.bot.runner.review_refusal(key.job_id, key.scene, key.version)
        await interaction.response.send_modal(PromptModal(key, record))

    async def submit_prompt(
        self, interaction: Interaction, key: SceneKey, prompt: str, negative: str
    ) -> None:
        """The prompt modal was sent: checked again (the job may have moved on meanwhile)."""
        job = await self.reviewable(interaction, key.job_id)
        record = await self.scene(job, key.scene)
        prompt, negative = prompt.strip(), negative.strip()
        if not prompt:
            raise ReelbotError("The prompt can't be empty: describe the image to make.")
        if (prompt, negative) == (record.image_prompt, record.negative_prompt):
            raise ReelbotError(f"Nothing changed: scene {key.scene} keeps its prompt.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self._lock(key):
            revised = await self.bot.runner.revise_scene(
                key.job_id, key.scene, key.version, prompt=prompt, negative=negative
            )
        self._requeued(job, f"Re-rendering scene {key.scene} (prompt edited)", interaction)
        await answer(
            interaction,
            f"Re-rendering scene {key.scene} with the new prompt (version {revised.version}, "
            f"same seed {revised.seed}){_afterwards(job)}.",
        )

    async def use_picture(
        self, interaction: Interaction, key: SceneKey, job: Job, record: SceneRecord
    ) -> None:
        shown = record.posted_version if job.state is JobState.FAILED else None
        if key.version not in (record.version, shown):  # not the version it would replace
            raise await self.bot.runner.review_refusal(key.job_id, key.scene, key.version)
        await interaction.response.send_modal(PictureModal(key))

    async def submit_picture(
        self, interaction: Interaction, key: SceneKey, upload: discord.Attachment
    ) -> None:
        """The picture form was sent: checked again (the job may have moved on meanwhile),
        the upload checked and kept (before anything is queued), then the scene's next
        version."""
        job = await self.reviewable(interaction, key.job_id)
        await self.scene(job, key.scene)
        await interaction.response.defer(ephemeral=True, thinking=True)
        runner = self.bot.runner
        with runner.cache.pinning() as pin:  # until the job pins it (revise_scene)
            try:
                own = await receive_scene_media(
                    key.scene, upload, runner.cache, self.bot.settings.limits, pin=pin
                )
            except ScriptError as exc:  # in the form's words, not a script's
                raise ReelbotError(f"Scene {key.scene}: {exc.problem}") from None
            async with self._lock(key):
                revised = await runner.revise_scene(
                    key.job_id, key.scene, key.version, media=StoredMedia.of(own)
                )
        self._requeued(job, f"Using an uploaded {own.label[4:]} for scene {key.scene}",
                       interaction)  # fmt: skip
        await answer(
            interaction,
            f"Using your {own.label[4:]} for scene {key.scene} (version {revised.version}). It "
            f"replaces this one in the thread when it is ready{_afterwards(job)}.",
        )

    async def approve(self, interaction: Interaction, key: SceneKey, job: Job) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self._lock(key):
            approval = await self.bot.runner.approve_scene(key.job_id, key.scene, key.version)
        await self.bot.presenters.scenes_changed(job, [key.scene])
        await self._approved(interaction, job, approval, f"Scene {key.scene} approved")

    async def approve_all(self, interaction: Interaction, job: Job) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        numbers, approval = await self.bot.runner.approve_all(job.id)
        await self.bot.presenters.scenes_changed(job, numbers)
        scenes = ", ".join(map(str, numbers)) or "none left"
        await self._approved(interaction, job, approval, f"Approved scenes: {scenes}")

    # ------------------------------------------------------------ helpers

    def _lock(self, key: SceneKey) -> asyncio.Lock:
        lock = self._locks.get((key.job_id, key.scene))
        if lock is None:
            lock = self._locks[key.job_id, key.scene] = asyncio.Lock()
        return lock

    def _requeued(self, job: Job, detail: str, interaction: Interaction) -> None:
        """The job is back in the queue: show it queued, then let the runner take it."""
        self.bot.presenters.requeued(job, f"{detail}, asked by <@{interaction.user.id}>.")
        self.bot.runner.wake()

    async def _approved(
        self, interaction: Interaction, job: Job, approval: Approval, what: str
    ) -> None:
        if approval.queued:
            self._requeued(job, "Every scene is approved: making the video", interaction)
            text = f"{what}. Every scene is approved: the video is being made."
        else:
            fresh = await self.bot.store.get_job(job.id)
            if fresh is not None:
                await self.bot.presenters.review_changed(fresh)
            text = f"{what} ({approval.approved} of {approval.total} scenes approved)."
        await answer(interaction, text)


def _afterwards(job: Job) -> str:
    if job.options.review:
        return "; approve it there when you like it"
    return "; then the video is joined again and posted as a new version"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ReviewCog(cast(ReelBot, bot)))
