"""An OpenAI-compatible chat completions client: OpenAI, Together's chat models, Ollama, vLLM,
LM Studio, llama.cpp's server — anything that answers `POST {base_url}/chat/completions`.

The request is the published one's smallest form (tests/contracts/openai-chat.openapi.yaml):
`model` and `messages` only. No temperature or token limit is sent: reasoning models refuse a
temperature, and servers disagree on the name of the token limit. The key (`LLM_API_KEY`) is
sent as a bearer token when it is set; many local servers want none.

Server errors, timeouts and unreachable hosts are tried again (`[llm] max_attempts`); a refusal
(a bad key, an unknown model, a rate limit) is said at once, in words, as an `LLMError`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .config import LLMConfig
from .errors import ConfigError, LLMError

__all__ = ["ChatAnswer", "ChatMessage", "chat", "not_configured"]

log = logging.getLogger(__name__)
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class ChatAnswer:
    content: str
    finish_reason: str  # "stop"; "length" when the answer was cut off
    model: str  # the model that answered, as the server names it


def not_configured() -> ConfigError:
    return ConfigError(
        "drafting needs a chat model: set [llm] base_url (and model) in the config, e.g. "
        'base_url = "https://api.openai.com/v1" or "http://127.0.0.1:11434/v1" (Ollama), '
        "or REELBOT_LLM__BASE_URL; put its key in LLM_API_KEY if it wants one"
    )


async def chat(
    client: httpx.AsyncClient,
    config: LLMConfig,
    messages: list[ChatMessage],
    *,
    api_key: str | None = None,
) -> ChatAnswer:
    """One chat completion: the first choice's message."""
    if not config.base_url:
        raise not_configured()
    where = f"the chat server at {config.base_url}"
    url = f"{config.base_url.rstrip('/')}/chat/completions"
    body = {"model": config.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages]}  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for attempt in range(1, config.max_attempts + 1):
        last = attempt == config.max_attempts
        try:
            response = await client.post(url, json=body, headers=headers, timeout=config.timeout)
        except httpx.TimeoutException:
            if last:
                raise LLMError(f"{where} did not answer within {config.timeout:g} s "
                               "([llm] timeout)", retryable=True) from None  # fmt: skip
        except httpx.TransportError:
            if last:
                raise LLMError(f"{where} could not be reached ([llm] base_url)",
                               retryable=True) from None  # fmt: skip
        else:
            if response.status_code == 200:
                return _answer(response, where)
            if response.status_code < 500 or last:
                raise _refusal(response, where, config, keyed=api_key is not None)
        log.info("%s: attempt %d of %d failed; trying again", where, attempt, config.max_attempts)
        await asyncio.sleep(min(8.0, 1.0 * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def _answer(response: httpx.Response, where: str) -> ChatAnswer:
    try:
        data: Any = response.json()
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        finish = str(choice.get("finish_reason") or "stop")
        model = str(data.get("model") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise LLMError(f"{where} did not answer with a chat completion", retryable=True) from None
    if not isinstance(content, str) or not content.strip():
        refusal = message.get("refusal") if isinstance(message, dict) else None
        if isinstance(refusal, str) and refusal.strip():
            raise LLMError(f"the model declined: {refusal.strip()[:300]}")
        raise LLMError(f"{where} answered with no text", retryable=True)
    return ChatAnswer(content, finish, model)


def _refusal(response: httpx.Response, where: str, config: LLMConfig, *, keyed: bool) -> LLMError:
    status = response.status_code
    reason = _reason(response)
    if status in (401, 403):
        hint = "check LLM_API_KEY" if keyed else "it wants a key: set LLM_API_KEY"
        return LLMError(f"{where} refused the request (HTTP {status}: {reason}); {hint}")
    if status == 404:
        return LLMError(f"{where} has no model {config.model!r} or no chat completions "
                        f"(HTTP 404: {reason}); check [llm] model and base_url")  # fmt: skip
    if status == 429:
        return LLMError(f"{where} is rate limiting or out of credit (HTTP 429: {reason}); try "
                        "again later", retryable=True)  # fmt: skip
    return LLMError(f"{where} refused the request (HTTP {status}: {reason})",
                    retryable=status >= 500)  # fmt: skip


def _reason(response: httpx.Response) -> str:
    """The server's own words, short (OpenAI: `error.message`; others: `detail`, `message`)."""
    try:
        data = response.json()
    except ValueError:
        return (response.text.strip()[:200] or response.reason_phrase).replace("\n", " ")
    if isinstance(data, dict):
        detail = data.get("error") or data.get("detail") or data.get("message")
        if isinstance(detail, dict):
            detail = detail.get("message")
        if detail:
            return str(detail)[:200].replace("\n", " ")
    return response.reason_phrase
