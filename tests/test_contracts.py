"""The published contracts (tests/contracts/) and the fakes that speak them: every fake's answer
takes the published shape, every request outside the contract is refused naming its field, and
the contract files are what they say they are."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.contracts import (
    CONTRACTS,
    ContractViolation,
    discord_limits,
    load_contract,
    request_schema,
    response_schema,
)
from tests.fakes.llm import FakeChat, Reply
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether

KEY = "contract-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
IMAGE_ANSWER = response_schema("together.openapi.yaml", "/images/generations", "post")
MODEL_LIST = response_schema("together.openapi.yaml", "/models", "get")
ERROR = response_schema("together.openapi.yaml", "/models", "get", "401")
VOICES = response_schema("kokoro-fastapi.openapi.yaml", "/v1/audio/voices", "get")
CHAT_ANSWER = response_schema("openai-chat.openapi.yaml", "/chat/completions", "post")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def request(**overrides: Any) -> dict[str, Any]:
    body = {"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a lighthouse", "width": 64,
            "height": 96, "seed": 1, "n": 1, "response_format": "base64"}  # fmt: skip
    return body | overrides


# ------------------------------------------------------------ the contract files


@pytest.mark.parametrize(
    "name",
    ["together.openapi.yaml", "openai-speech.openapi.yaml", "kokoro-fastapi.openapi.yaml",
     "openai-chat.openapi.yaml", "discord-limits.yaml"],
)  # fmt: skip
def test_every_contract_says_where_it_comes_from(name: str) -> None:
    text = (CONTRACTS / name).read_text(encoding="utf-8")
    assert text.startswith("#") and "Source" in text.splitlines()[1] + text.splitlines()[0]
    source = load_contract(name).get("x-source") or load_contract(name)["info"]["x-source"]
    assert "commit" in source or "discord" in source


def test_the_published_enums_are_closed_and_unknown_fields_refused() -> None:
    generation = request_schema("together.openapi.yaml", "/images/generations")
    generation.check(request(output_format="png", steps=4, negative_prompt="fog"))
    cases = {
        "body.response_format": request(response_format="b64_json"),
        "body.output_format": request(output_format="webp"),
        "body.model": request(model="black-forest-labs/flux.1-schnell"),  # a typo in the case
        "body.negative_promt": request(negative_promt="fog"),
    }
    for field, body in cases.items():
        with pytest.raises(ContractViolation) as caught:
            generation.check(body)
        assert caught.value.field == field, caught.value


def test_the_openai_speech_contract() -> None:
    speech = request_schema("openai-speech.openapi.yaml", "/audio/speech",
                            also={"voice": ["fable", "onyx", "nova"]})  # fmt: skip
    ok = {"model": "gpt-4o-mini-tts", "input": "Hi.", "voice": "nova", "instructions": "calm",
          "response_format": "wav", "speed": 1.0}  # fmt: skip
    speech.check(ok)
    for field, body in {
        "body.voice": ok | {"voice": "en-us"},
        "body.input": ok | {"input": "x" * 4097},
        "body.speed": ok | {"speed": 5},
        "body.response_format": ok | {"response_format": "wave"},
        "body.instruction": ok | {"instruction": "calm"},
    }.items():
        with pytest.raises(ContractViolation) as caught:
            speech.check(body)
        assert caught.value.field == field


def test_the_discord_limits_agree_with_discord_py() -> None:
    import discord

    limits = discord_limits()["uploads"]
    tiers = discord.Guild._PREMIUM_GUILD_LIMITS
    for tier, size in limits["by_premium_tier"].items():
        assert tiers[tier].filesize == size
    assert limits["default_bytes"] == discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES == 10 * 2**20


# ------------------------------------------------------------ Together's answers


@pytest.mark.parametrize(
    ("asked", "answered"), [({}, "JPEG"), ({"output_format": "png"}, "PNG"),
                            ({"output_format": "jpeg"}, "JPEG")],
)  # fmt: skip
async def test_together_answers_in_the_published_shape(
    client: httpx.AsyncClient, asked: dict[str, str], answered: str
) -> None:
    async with FakeTogether(expected_key=KEY) as fake:
        r = await client.post(f"{fake.base_url}/images/generations", json=request(**asked),
                              headers=AUTH)  # fmt: skip
    assert r.status_code == 200
    IMAGE_ANSWER.check(r.json())
    item = r.json()["data"][0]
    assert item["type"] == "b64_json"
    with Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) as picture:
        assert picture.format == answered and picture.size == (64, 96)


async def test_together_answers_a_url_that_serves_the_image(client: httpx.AsyncClient) -> None:
    async with FakeTogether(expected_key=KEY) as fake:
        r = await client.post(f"{fake.base_url}/images/generations",
                              json=request(response_format="url"), headers=AUTH)  # fmt: skip
        IMAGE_ANSWER.check(r.json())
        item = r.json()["data"][0]
        assert item["type"] == "url" and item["url"].endswith(".jpg")
        image = await client.get(item["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:3] == b"\xff\xd8\xff"


async def test_together_lists_models_and_refuses_a_model_it_does_not_offer(
    client: httpx.AsyncClient,
) -> None:
    async with FakeTogether(expected_key=KEY) as fake:
        models = await client.get(f"{fake.base_url}/models", headers=AUTH)
        refused = await client.get(f"{fake.base_url}/models", headers={"Authorization": "x"})
        gone = await client.post(
            f"{fake.base_url}/images/generations", headers=AUTH,
            json=request(model="black-forest-labs/FLUX.1-schnell-Free"),
        )  # fmt: skip
    MODEL_LIST.check(models.json())
    ids = {m["id"]: m["type"] for m in models.json()}
    assert ids["black-forest-labs/FLUX.1-schnell"] == "image"
    assert "black-forest-labs/FLUX.1-schnell-Free" not in ids  # no longer offered
    assert refused.status_code == 401
    ERROR.check(refused.json())
    assert gone.status_code == 404
    ERROR.check(gone.json())
    assert gone.json()["error"]["code"] == "model_not_available"


async def test_together_refuses_a_revoked_key_and_one_without_credit(
    client: httpx.AsyncClient,
) -> None:
    """401 (not a valid key) and 402 (no credit left) in the published error shape."""
    keys = {"good-key": 200, "revoked-key": 401, "broke-key": 402}
    async with FakeTogether(keys=keys) as fake:
        answers = {}
        for key in [*keys, "unknown-key"]:
            answers[key] = await client.post(
                f"{fake.base_url}/images/generations",
                json=request(),
                headers={"Authorization": f"Bearer {key}"},
            )
    assert {key: r.status_code for key, r in answers.items()} == {
        "good-key": 200, "revoked-key": 401, "broke-key": 402, "unknown-key": 401,
    }  # fmt: skip
    IMAGE_ANSWER.check(answers["good-key"].json())
    for key in ("revoked-key", "broke-key", "unknown-key"):
        ERROR.check(answers[key].json())
    assert answers["revoked-key"].json()["error"]["code"] == "invalid_api_key"
    assert answers["broke-key"].json()["error"]["type"] == "credit_limit"
    assert [fake.key_of(r) for r in fake.requests] == [*keys, "unknown-key"]


@pytest.mark.parametrize("reset_as", ["seconds", "unix"])
async def test_together_rate_limits_with_x_ratelimit_reset(
    client: httpx.AsyncClient, reset_as: str
) -> None:
    async with FakeTogether(expected_key=KEY, rate_limited_for=60, ratelimit_reset=2,
                            reset_as=reset_as) as fake:  # type: ignore[arg-type]  # fmt: skip
        r = await client.post(f"{fake.base_url}/images/generations", json=request(),
                              headers=AUTH)  # fmt: skip
    assert r.status_code == 429
    ERROR.check(r.json())
    assert r.json()["error"]["code"] == "dynamic_request_limited"
    reset = float(r.headers["x-ratelimit-reset"])
    assert reset == 2 if reset_as == "seconds" else reset > 1_000_000_000


# ------------------------------------------------------------ the speech servers


async def test_kokoro_lists_its_voices_in_the_published_shape(client: httpx.AsyncClient) -> None:
    async with FakeSpeech() as speech:
        voices = await client.get(f"{speech.base_url}/audio/voices")
        legacy = await client.get(f"{speech.base_url}/audio/voices?legacy=true")
    VOICES.check(voices.json())
    assert "af_bella" in {v["id"] for v in voices.json()["voices"]}
    assert "af_bella" in legacy.json()["voices"]


@pytest.mark.parametrize(
    ("flavour", "overrides", "words"),
    [
        ("kokoro", {"instructions": "calm"}, "body.instructions: not a field"),
        ("kokoro", {"model": "tts-2"}, "body.model: 'tts-2' is not one of"),
        ("openai", {"voice": "en-us"}, "body.voice: 'en-us' is not one of"),
        ("openai", {"input": "x" * 4097}, "body.input: 'xxx"),
    ],
)
async def test_speech_requests_outside_the_contract_are_refused_naming_the_field(
    client: httpx.AsyncClient, flavour: str, overrides: dict[str, Any], words: str
) -> None:
    model = "kokoro" if flavour == "kokoro" else "tts-1"
    body = {"model": model, "input": "Hello.", "voice": "alloy", "response_format": "wav",
            "speed": 1.0} | overrides  # fmt: skip
    async with FakeSpeech(flavour=flavour) as speech:  # type: ignore[arg-type]
        r = await client.post(f"{speech.base_url}/audio/speech", json=body)
        assert len(speech.violations) == 1 and words in speech.violations[0]
        speech.violations.clear()  # refused on purpose
    assert r.status_code == 400 and words in r.text


async def test_what_the_services_refuse_beyond_their_schemas(client: httpx.AsyncClient) -> None:
    base = {"input": "Hello.", "response_format": "wav", "speed": 1.0}
    async with FakeSpeech() as kokoro, FakeSpeech(flavour="openai") as openai:
        unknown = await client.post(
            f"{kokoro.base_url}/audio/speech", json=base | {"model": "kokoro", "voice": "af_nobody"}
        )
        mapped = await client.post(
            f"{kokoro.base_url}/audio/speech", json=base | {"model": "kokoro", "voice": "alloy"}
        )
        mixed = await client.post(
            f"{kokoro.base_url}/audio/speech",
            json=base | {"model": "kokoro", "voice": "af_bella(2)+af_sky"},
        )
        old_model = await client.post(
            f"{openai.base_url}/audio/speech",
            json=base | {"model": "tts-1", "voice": "alloy", "instructions": "calm"},
        )
        new_model = await client.post(
            f"{openai.base_url}/audio/speech",
            json=base | {"model": "gpt-4o-mini-tts", "voice": "alloy", "instructions": "calm"},
        )
    assert unknown.status_code == 400 and "Voice 'af_nobody' not found" in unknown.text
    assert mapped.status_code == mixed.status_code == 200  # OpenAI's names; a mix of two
    assert old_model.status_code == 400 and "not supported for tts-1" in old_model.text
    assert new_model.status_code == 200
    assert kokoro.violations == openai.violations == []  # refused by the service, not the schema


async def test_speech_streams_wav_with_unknown_sizes(client: httpx.AsyncClient) -> None:
    body = {"model": "kokoro", "input": "x" * 100, "voice": "af_heart", "response_format": "wav"}
    async with FakeSpeech() as streamed, FakeSpeech(streamed=False) as whole:
        a = await client.post(f"{streamed.base_url}/audio/speech", json=body)
        b = await client.post(f"{whole.base_url}/audio/speech", json=body)
    assert a.headers.get("transfer-encoding") == "chunked"
    assert a.content[4:8] == a.content[40:44] == b"\xff\xff\xff\xff"
    assert b.content[4:8] != b"\xff\xff\xff\xff"
    assert a.content[44:] == b.content[44:]  # the same sound, only the header differs


# ------------------------------------------------------------ chat completions


def chat_request(**overrides: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Write scripts."},
                {"role": "user", "content": "Topic: cats"}]  # fmt: skip
    return {"model": "gpt-4o-mini", "messages": messages} | overrides


def test_the_openai_chat_contract() -> None:
    chat = request_schema("openai-chat.openapi.yaml", "/chat/completions")
    ok = chat_request()
    chat.check(ok)
    chat.check(ok | {"messages": [*ok["messages"], {"role": "assistant", "content": "# T"},
                                  {"role": "developer", "content": "Again."}],
                     "temperature": 0.7, "max_completion_tokens": 2000, "n": 1})  # fmt: skip
    for field, body in {
        "body.messages": ok | {"messages": []},
        "body.model": ok | {"model": "llama3.1"},  # OpenAI's published models only
        "body.temprature": ok | {"temprature": 0.5},
        "body.temperature": ok | {"temperature": 3},
        "body.tools": ok | {"tools": []},  # trimmed from the excerpt: refused
        "body.messages.1.role": ok | {"messages": [ok["messages"][0], {"role": "tool",
                                                                       "content": "x"}]},
    }.items():  # fmt: skip
        with pytest.raises(ContractViolation) as caught:
            chat.check(body)
        assert caught.value.field == field, caught.value


@pytest.mark.parametrize("finish", ["stop", "length"])
async def test_the_chat_fake_answers_in_the_published_shape(
    client: httpx.AsyncClient, finish: str
) -> None:
    async with FakeChat([Reply("# Cats\n## 1\nimage: a cat\nMeow.", finish)],
                        expected_key=KEY) as fake:  # fmt: skip
        r = await client.post(f"{fake.base_url}/chat/completions", json=chat_request(),
                              headers=AUTH)  # fmt: skip
        wrong_key = await client.post(f"{fake.base_url}/chat/completions", json=chat_request())
    assert r.status_code == 200
    answer = r.json()
    CHAT_ANSWER.check(answer)
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "gpt-4o-mini" and isinstance(answer["created"], int)
    (choice,) = answer["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == finish
    assert choice["message"] == {"role": "assistant", "content": "# Cats\n## 1\nimage: a cat\n"
                                 "Meow.", "refusal": None}  # fmt: skip
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert wrong_key.status_code == 401
    assert wrong_key.json()["error"]["code"] == "invalid_api_key"


async def test_chat_requests_outside_the_contract_are_refused_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    async with FakeChat(["hi"]) as fake:
        r = await client.post(f"{fake.base_url}/chat/completions",
                              json=chat_request(respone_format={"type": "text"}))  # fmt: skip
        assert len(fake.violations) == 1 and "body.respone_format" in fake.violations[0]
        fake.violations.clear()  # refused on purpose
    assert r.status_code == 400 and "body.respone_format" in r.json()["error"]["message"]
