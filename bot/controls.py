"""The buttons on a job's messages, handed in by the features that own them.

The progress message and the scene messages in the thread draw no button of their own. A
feature that puts one there adds a function to `Controls` when its cog loads (and takes it out
when the cog unloads); the messages ask every function, in order, which buttons to show:

    progress message   Controls.progress   ProgressView → buttons
                                           review: ✅ Approve all (while the job waits for it)
    scene message      Controls.scene      (Job, SceneRecord) → buttons
                                           review: 🔁 Regenerate, ✏️ Edit prompt, ✅ Approve

A button that must keep working after a restart is a `DynamicItem` (its state in its custom_id,
everything else in the store) that the same cog registers with `add_dynamic_items` in its
`cog_load`: see `bot/cogs/review.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import discord

from .progress_embed import ProgressView
from .store import Job, SceneRecord

__all__ = ["Controls", "ProgressButtons", "SceneButtons", "with_buttons"]

Item = discord.ui.Item[Any]
ProgressButtons = Callable[[ProgressView], Sequence[Item]]
SceneButtons = Callable[[Job, SceneRecord], Sequence[Item]]


class Controls:
    """What each feature puts on the progress message and on the scene messages."""

    def __init__(self) -> None:
        self.progress: list[ProgressButtons] = []
        self.scene: list[SceneButtons] = []

    def progress_view(self, view: ProgressView) -> discord.ui.View | None:
        """The progress message's buttons for `view`; None when no feature offers any."""
        return _view(item for buttons in self.progress for item in buttons(view))

    def scene_view(self, job: Job, record: SceneRecord) -> discord.ui.View | None:
        """A scene message's buttons for the version `record` is at; None when there are none."""
        return _view(item for buttons in self.scene for item in buttons(job, record))


def with_buttons(view: discord.ui.View | None) -> dict[str, Any]:
    """`view=` for a `send`, which takes no None: left out when there are no buttons."""
    return {} if view is None else {"view": view}


def _view(items: Iterable[Item]) -> discord.ui.View | None:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view if view.children else None
