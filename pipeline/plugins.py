"""Front ends plug into `reelbot` through the `reelbot.commands` entry-point group.

    [project.entry-points."reelbot.commands"]
    bot = "bot.plugin:front_end"

An entry point names a `FrontEnd`: the sub-command it adds to `reelbot`, and the config tables
it reads. One config file serves every installed front end, so those tables are known to
`load_settings` too: `reelbot render` accepts (and checks) the bot's `[discord]`, and refuses a
table nobody reads. The pipeline never imports a front end by name.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TypeAlias

from pydantic import BaseModel

__all__ = ["GROUP", "FrontEnd", "SubCommands", "front_ends", "plugin_sections"]

GROUP = "reelbot.commands"
SubCommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrontEnd:
    """What a `reelbot.commands` entry point names."""

    # Adds the front end's sub-command(s) to `reelbot`.
    register: Callable[[SubCommands], None]
    # The config tables it reads, beyond the pipeline's: table name → its model.
    sections: Mapping[str, type[BaseModel]] = field(default_factory=dict)


@functools.cache
def front_ends() -> tuple[FrontEnd, ...]:
    """Every installed front end (one whose dependencies are missing is skipped)."""
    found: list[FrontEnd] = []
    for point in entry_points(group=GROUP):
        try:
            loaded = point.load()
        except ImportError as exc:
            log.debug("front end %s unavailable: %s", point.name, exc)
            continue
        # A bare function is a front end that adds a command and reads no table of its own.
        found.append(loaded if isinstance(loaded, FrontEnd) else FrontEnd(register=loaded))
    return tuple(found)


def plugin_sections() -> dict[str, type[BaseModel]]:
    """The config tables the installed front ends read."""
    return {name: model for end in front_ends() for name, model in end.sections.items()}
