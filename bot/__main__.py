"""`python -m bot` and `reelbot bot`: run the Discord front end.

    python -m bot --config config.toml     (the token comes from DISCORD_TOKEN)

Start-up as in discord.py's `advanced_startup.py`: our own `asyncio.run(main())` opens the
HTTP client, the store and the job runner with `async with`, then hands them to the bot.
SIGTERM / SIGINT stop it gracefully: running renders go back to the queue and resume at the
next start. Exit status: 0 after a clean stop; 1 when Discord cannot be reached; 2 for a bad
config, a missing/refused token or an unreadable store (`<data_dir>/bot.sqlite3`). Each failure
to start is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import discord
import discord.gateway
import discord.http
import httpx
import yarl

from pipeline.config import load_settings
from pipeline.errors import ConfigError, ReelbotError
from pipeline.logs import RedactSecrets
from pipeline.logs import setup_logging as pipeline_logging
from pipeline.tts import check_tts

from .app import ReelBot
from .config import BotSettings, DiscordConfig
from .jobs import JobRunner
from .presenter import Presenters
from .store import Store

__all__ = ["main", "point_discord_at", "run_bot"]

log = logging.getLogger("bot")
# What connecting to Discord raises when it cannot be reached (or answers with a 5xx).
UNREACHABLE = (aiohttp.ClientError, discord.GatewayNotFound, discord.DiscordServerError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Run the Discord bot.")
    parser.add_argument("--config", type=Path, help="a config.toml")
    parser.add_argument("-v", "--verbose", action="store_true", help="log in detail")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, BotSettings)
        check_tts(settings)  # a missing Piper or voice file: said now, in one line
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    secret = settings.secrets.discord_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        print(
            "error: DISCORD_TOKEN is not set. Put the bot token from the Discord developer "
            "portal (your application → Bot → Reset Token) in the DISCORD_TOKEN environment "
            "variable.",
            file=sys.stderr,
        )
        return 2
    setup_logging(token, verbose=args.verbose)
    try:
        asyncio.run(run_bot(settings, token))
    except discord.LoginFailure:
        print("error: Discord refused the token in DISCORD_TOKEN (was it reset?)", file=sys.stderr)
        return 2
    except ReelbotError as exc:  # the store cannot be opened
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UNREACHABLE as exc:
        log.debug("Discord cannot be reached", exc_info=True)
        print(f"error: Discord cannot be reached at {settings.discord.api_base} ({_reason(exc)}); "
              "check the network, or [discord] api_base", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    return 0


def _reason(error: BaseException) -> str:
    """A connection failure in a few words (the socket's own, when there is one)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"{error.host}:{error.port}: {error.os_error.strerror or 'connection failed'}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def point_discord_at(config: DiscordConfig) -> None:
    """[discord] api_base and gateway_url: REST through a proxy, or a fake Discord in tests."""
    discord.http.Route.BASE = config.api_base.rstrip("/")
    if config.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)


async def run_bot(settings: BotSettings, token: str) -> None:
    point_discord_at(settings.discord)
    # The bot never joins a voice channel: no warning about voice libraries at every start.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    async with (
        httpx.AsyncClient() as client,
        await Store.open(settings.storage.data_dir / "bot.sqlite3") as store,
        contextlib.AsyncExitStack() as stack,
    ):
        presenters = Presenters(settings, store)
        runner = JobRunner(store, settings, client, observer_for=presenters.observer_for,
                           on_forgotten=presenters.forgotten)  # fmt: skip
        stack.push_async_callback(runner.close)  # whatever happens, jobs go back to the queue
        bot = ReelBot(settings=settings, store=store, runner=runner, presenters=presenters)
        async with bot:
            stop = _stop_on_signals(bot)
            try:
                await bot.start(token)
            finally:
                stop()
    log.info("stopped")


def _stop_on_signals(bot: ReelBot) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []

    def stop(signame: str) -> None:
        if not closing:
            log.info("%s received: stopping", signame)
            closing.append(asyncio.create_task(bot.close(), name="shutdown"))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return remove


class RedactToken(RedactSecrets):
    """Belt and braces: whatever a library logs, the token is never written out."""

    def __init__(self, token: str) -> None:
        super().__init__([("DISCORD_TOKEN", token)])


def setup_logging(token: str, *, verbose: bool = False) -> None:
    """INFO (each job, and each stage of its scenes); DEBUG with --verbose. No token, key or
    header in any line (pipeline/logs.py)."""
    pipeline_logging(2 if verbose else 1)
    logging.getLogger().handlers[0].addFilter(RedactToken(token))
    # discord.py's gateway chatter is noise at INFO unless asked for.
    logging.getLogger("discord").setLevel(logging.DEBUG if verbose else logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
