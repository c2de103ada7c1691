"""No secret and no header reaches a log line: not in a message, not in a traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pipeline.logs import RedactSecrets, setup_logging

KEY = "sk-live-abcdef0123456789"
NAMED = ("httpx", "httpcore", "asyncio", "PIL", "matplotlib")  # levels setup_logging sets


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The CLI's logging at -vv, with the key pasted with its newline, into a string."""
    monkeypatch.setenv("TOGETHER_API_KEY", KEY + "\n")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    named = {name: logging.getLogger(name).level for name in NAMED}
    setup_logging(2)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, named_level in named.items():
            logging.getLogger(name).setLevel(named_level)


def test_a_key_in_a_message_or_a_traceback_is_masked(captured: io.StringIO) -> None:
    log = logging.getLogger("pipeline.images.together")
    log.info("sending %s", f"Bearer {KEY}")
    try:
        raise ValueError(f"Illegal header value b'Bearer {KEY}\\n'")
    except ValueError:
        log.exception("request failed")
    text = captured.getvalue()
    assert KEY not in text and KEY[:12] not in text
    assert "Bearer [TOGETHER_API_KEY]" in text or "Bearer [redacted]" in text
    assert "ValueError: Illegal header value" in text  # the traceback itself is kept


def test_any_bearer_credential_is_masked() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("Authorization: "
                               "Bearer some-other-token",), None)  # fmt: skip
    assert RedactSecrets([]).filter(record)
    assert record.getMessage() == "Authorization: Bearer [redacted]"


def test_httpcore_trace_is_never_logged_even_at_debug(captured: io.StringIO) -> None:
    """httpcore's DEBUG trace carries the request's and response's headers."""
    logging.getLogger("httpcore.http11").debug("send_request_headers.started %s", KEY)
    logging.getLogger("httpx").info('HTTP Request: POST http://x/v1 "HTTP/1.1 200 OK"')
    text = captured.getvalue()
    assert "send_request_headers" not in text
    assert 'DEBUG   httpx: HTTP Request: POST http://x/v1 "HTTP/1.1 200 OK"' in text
