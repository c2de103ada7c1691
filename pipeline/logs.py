"""Logging for the command line and the bot: how much, and never a secret.

    reelbot render ...        warnings only
    reelbot -v render ...     INFO: each stage of each scene, its start and end, how long it took
    reelbot -vv render ...    DEBUG: also each HTTP request's method, URL and status

No header is ever logged: httpcore's DEBUG trace (request and response headers, and errors
quoting a header's value) is kept at WARNING whatever the level, and every record, traceback
included, has the API keys and tokens of the environment and any `Bearer ...` value masked.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping

__all__ = [
    "SECRET_VARIABLES",
    "RedactSecrets",
    "RequestsAtDebug",
    "environment_secrets",
    "mask_secrets",
    "quiet_http_logs",
    "setup_logging",
]

SECRET_VARIABLES = ("TOGETHER_API_KEY", "TTS_API_KEY", "LLM_API_KEY", "DISCORD_TOKEN")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\"\\]+")
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replace each secret's value by its name (`[TOGETHER_API_KEY]`) in a record's message
    and traceback, and any `Bearer <credential>` by `Bearer [redacted]`."""

    def __init__(self, secrets: Iterable[tuple[str, str]]) -> None:
        """`secrets`: (name, value) pairs."""
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted(
            {(value, name) for name, value in secrets if len(value) >= 4},
            key=lambda pair: -len(pair[0]),
        )

    def add(self, secrets: Iterable[tuple[str, str]]) -> None:
        """More (name, value) pairs to mask."""
        pairs = {(value, name) for name, value in secrets if len(value) >= 4}
        self.secrets = sorted(set(self.secrets) | pairs, key=lambda pair: -len(pair[0]))

    def redact(self, text: str) -> str:
        for value, name in self.secrets:
            text = text.replace(value, f"[{name}]")
        return _BEARER.sub(r"\1[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class RequestsAtDebug(logging.Filter):
    """httpx logs each request at INFO; here it is a detail, shown (and labelled) as DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "httpx" and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def environment_secrets(environ: Mapping[str, str] = os.environ) -> list[tuple[str, str]]:
    """The secrets in the environment, as (name, value): as given, and stripped."""
    found = [(name, environ.get(name, "")) for name in SECRET_VARIABLES]
    return [(name, form) for name, value in found for form in (value, value.strip()) if form]


def mask_secrets(secrets: Iterable[tuple[str, str]]) -> None:
    """Mask more secrets, as (name, value), in every log handler set up with RedactSecrets:
    those read after logging began (the keys in the variables `[images] keys` names)."""
    pairs = list(secrets)
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactSecrets):
                found.add(pairs)


def setup_logging(verbosity: int, *, secrets: Iterable[tuple[str, str]] = ()) -> None:
    """Log to stderr: warnings at 0, INFO at 1, DEBUG at 2 and more."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets([*environment_secrets(), *secrets]))
    handler.addFilter(RequestsAtDebug())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_http_logs(debug=level <= logging.DEBUG)
    for chatty in ("asyncio", "PIL", "matplotlib"):  # their DEBUG is about themselves
        logging.getLogger(chatty).setLevel(max(level, logging.INFO))


def quiet_http_logs(*, debug: bool) -> None:
    """httpx says "HTTP Request: POST <url> "HTTP/1.1 200 OK"" (its INFO): shown at DEBUG only.
    httpcore's trace holds headers: never shown."""
    logging.getLogger("httpx").setLevel(logging.INFO if debug else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
