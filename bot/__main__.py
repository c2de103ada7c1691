"""`python -m bot` and `reelbot bot`: run the Discord front end."""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `reelbot bot` to the pipeline's command line (entry point `reelbot.commands`)."""
    parser = commands.add_parser("bot", help="run the Discord bot")
    parser.add_argument("--config", help="a config.toml")
    parser.set_defaults(run=lambda args: main(["--config", args.config] if args.config else []))


def main(argv: list[str] | None = None) -> int:
    print("the Discord front end is not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
