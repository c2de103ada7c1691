"""The Discord bot as a `reelbot` plugin: `reelbot bot`, `reelbot worker` (renders for a bot
on other hosts), and the config tables the bot reads.

Light on purpose: `reelbot render` loads it to know the bot's tables; discord.py is imported
only when `reelbot bot` runs.
"""

from __future__ import annotations

import argparse

from pipeline.plugins import FrontEnd, SubCommands

from .config import BOT_SECTIONS

__all__ = ["front_end", "register"]


def register(commands: SubCommands) -> None:
    """Add `reelbot bot` and `reelbot worker` to the pipeline's command line (entry point
    `reelbot.commands`)."""
    parser = commands.add_parser("bot", help="run the Discord bot")
    parser.add_argument("--config", help="a config.toml")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log in detail (DEBUG; the default is INFO)")  # fmt: skip
    parser.set_defaults(run=_run)
    worker = commands.add_parser(
        "worker", help='render the bot\'s jobs on this host ([queue] backend = "arq")'
    )
    worker.add_argument("--config", help="a config.toml (the bot's)")
    worker.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log in detail (DEBUG; the default is INFO)")  # fmt: skip
    worker.set_defaults(run=_worker)


def _run(args: argparse.Namespace) -> int:
    from .__main__ import main

    argv = ["--config", args.config] if args.config else []
    return main(argv + ["--verbose"] * args.verbose)


def _worker(args: argparse.Namespace) -> int:
    from .remote.worker import main

    argv = ["--config", args.config] if args.config else []
    return main(argv + ["--verbose"] * min(1, args.verbose))


front_end = FrontEnd(register=register, sections=BOT_SECTIONS)
