"""Fake OpenAI-compatible chat completions server (``POST /v1/chat/completions``).

Every request is checked against OpenAI's published contract
(tests/contracts/openai-chat.openapi.yaml), strictly: an unknown field, a message role or a
model outside the published ones is a 400 naming the field, and fails the test. The answer
takes the published shape of a chat completion object: ``id``, ``object: "chat.completion"``,
``created``, ``model``, ``choices[{index, message{role, content, refusal}, logprobs,
finish_reason}]`` and ``usage``.

What it answers is scripted: ``replies``, one per request in order (the last one repeats), each
a text or a ``Reply`` (with its ``finish_reason``). ``status`` makes every request fail with
that HTTP status and an OpenAI-style error body; ``expected_key`` refuses any other bearer
token with 401, as OpenAI does.

Run standalone: ``python -m tests.fakes.llm --port 0 --reply-file script.md``; the first stdout
line is the base URL. ``GET /_fake/state`` (outside /v1) returns the recorded state as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.contracts import request_schema
from tests.fakes.server import FakeServer, RecordedRequest, error_response, serve_forever

CONTRACT = "openai-chat.openapi.yaml"
CHAT = request_schema(CONTRACT, "/chat/completions")
ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("insufficient_quota", "insufficient_quota"),
    500: ("server_error", None),
    503: ("server_error", None),
}


@dataclass(frozen=True)
class Reply:
    content: str
    finish_reason: str = "stop"


class FakeChat(FakeServer):
    path = "/chat/completions"

    def __init__(
        self,
        replies: Sequence[str | Reply] = (),
        *,
        expected_key: str | None = None,
        status: int | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.replies = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        self.expected_key = expected_key
        self.status = status
        self._ids = itertools.count(1)
        self._answered = 0

    def conversation(self, index: int) -> list[dict[str, Any]]:
        """The messages of the `index`-th request."""
        messages: list[dict[str, Any]] = self.requests[index].json["messages"]
        return messages

    async def respond(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        if self.status is not None:
            return self._error(self.status, f"the fake answers {self.status}")
        auth = request.headers.get("Authorization")
        if self.expected_key is not None and auth != f"Bearer {self.expected_key}":
            return self._error(401, "Incorrect API key provided.")
        refused = self.violates(CHAT, rec)
        if refused is not None:
            return refused
        body: dict[str, Any] = rec.json
        if body.get("stream"):
            return self._error(400, "this fake answers whole completions, not streams")
        if not self.replies:
            return self._error(500, "the fake has no reply scripted")
        reply = self.replies[min(self._answered, len(self.replies) - 1)]
        self._answered += 1
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion = len(reply.content.split())
        answer = {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        return web.json_response(answer)

    def _error(self, status: int, message: str) -> web.Response:
        kind, code = ERRORS.get(status, ("server_error", None))
        return error_response(status, message, kind, code)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.llm", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--reply-file", type=Path, action="append", default=[],
                   help="a file whose text is the next reply (repeat for more)")  # fmt: skip
    p.add_argument("--expected-key")
    args = p.parse_args(argv)
    replies = [path.read_text(encoding="utf-8") for path in args.reply_file]
    serve_forever(FakeChat(replies, expected_key=args.expected_key, port=args.port))


if __name__ == "__main__":
    main()
