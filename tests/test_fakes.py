"""Tests of the fake servers themselves, driven by a plain httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import subprocess
import sys
import time
import wave
from array import array
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.audio import wav_duration
from tests.fakes.server import CLIENT_CLOSED, closed_base_url
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import PALETTE, FakeTogether

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def image_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "black-forest-labs/FLUX.1-schnell",
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "text, watermark",
        "width": 320,
        "height": 192,
        "steps": 4,
        "n": 1,
        "seed": 7,
        "response_format": "base64",
        "output_format": "png",
    }
    return body | overrides


def speech_body(text: str, **overrides: Any) -> dict[str, Any]:
    body = {"model": "kokoro", "input": text, "voice": "af_heart", "response_format": "wav"}
    return body | {"speed": 1.0} | overrides


async def generate(
    client: httpx.AsyncClient, fake: FakeTogether, headers: dict[str, str] = AUTH, **kw: Any
) -> httpx.Response:
    url = f"{fake.base_url}/images/generations"
    return await client.post(url, json=image_body(**kw), headers=headers)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before deadline"
        await asyncio.sleep(0.005)


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert "code" in error
    return error


def kokoro_error(response: httpx.Response, status: int) -> str:
    """The message of an error in Kokoro-FastAPI's shape (FastAPI's ``detail``)."""
    assert response.status_code == status
    detail: dict[str, str] = response.json()["detail"]
    assert detail["type"] == "invalid_request_error"
    return detail["message"]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


# --- FakeTogether ----------------------------------------------------------------------------


async def test_together_returns_png_of_requested_size_and_recorded_colour(
    client: httpx.AsyncClient,
) -> None:
    async with FakeTogether(latency=0.05, expected_key=KEY) as together:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", together.base_url)
        r1 = await generate(client, together, width=320, height=192)
        r2 = await generate(client, together, width=64, height=128)

    assert r1.status_code == 200
    payload = r1.json()
    assert payload["object"] == "list"
    assert payload["model"] == "black-forest-labs/FLUX.1-schnell"
    assert payload["data"][0]["index"] == 0 and payload["data"][0]["type"] == "b64_json"
    rec1, rec2 = together.requests
    for response, rec, size in ((r1, rec1, (320, 192)), (r2, rec2, (64, 128))):
        image = Image.open(io.BytesIO(base64.b64decode(response.json()["data"][0]["b64_json"])))
        assert image.format == "PNG" and image.size == size
        assert image.convert("RGB").getcolors() == [(size[0] * size[1], rec.colour)]
    assert together.colours == [PALETTE[0], PALETTE[1]]
    assert rec1.json == image_body(width=320, height=192)
    assert rec1.headers["Authorization"] == f"Bearer {KEY}"
    assert rec1.status == 200 and rec1.path == "/v1/images/generations"
    assert rec1.t_end is not None and rec1.t_end - rec1.t_start >= 0.05
    assert together.overlaps == 0 and together.max_in_flight == 1


async def test_together_second_concurrent_request_gets_429(client: httpx.AsyncClient) -> None:
    async with FakeTogether(latency=0.3, retry_after=2) as together:
        responses = await asyncio.gather(generate(client, together), generate(client, together))
        after = await generate(client, together)

    assert sorted(r.status_code for r in responses) == [200, 429]
    rejected = next(r for r in responses if r.status_code == 429)
    assert_error_shape(rejected, 429)
    assert rejected.headers["Via"] == "1.1 fake"
    assert rejected.headers["Retry-After"] == "2"
    assert after.status_code == 200
    assert together.overlaps == 1 and together.max_in_flight == 2
    assert len(together.colours) == 2


async def test_together_checks_bearer_key(client: httpx.AsyncClient) -> None:
    async with FakeTogether(expected_key=KEY) as together:
        missing = await generate(client, together, headers={})
        wrong = await generate(client, together, headers={"Authorization": "Bearer nope"})
        right = await generate(client, together)

    for response in (missing, wrong):
        error = assert_error_shape(response, 401)
        assert (error["message"], error["type"], error["code"]) == (
            "Invalid API key provided",
            "invalid_request_error",
            "invalid_api_key",
        )
    assert right.status_code == 200


async def test_together_serves_script_of_statuses_in_order(client: httpx.AsyncClient) -> None:
    script: list[int | str] = [429, 500, 502, 503, 401, 402, 403, 400, 422, 200]
    async with FakeTogether(script_of_statuses=script, retry_after=0.5) as together:
        responses = [await generate(client, together) for _ in range(len(script) + 1)]
        together.script_of_statuses = [503]  # knobs are settable while running
        late = await generate(client, together)

    assert [r.status_code for r in responses] == [*script, 200]
    assert [rec.status for rec in together.requests] == [*script, 200, 503]
    assert script == [429, 500, 502, 503, 401, 402, 403, 400, 422, 200]  # the list is copied
    assert together.script_of_statuses == []
    errors = {r.status_code: assert_error_shape(r, r.status_code) for r in responses[:-2]}
    assert "Input validation error" in errors[400]["message"]
    assert "safety checker" in errors[422]["message"]
    assert "credit" in errors[402]["message"].lower()
    assert "payment required" in errors[402]["message"].lower()
    assert responses[0].headers["Retry-After"] == "0.5"
    assert "Retry-After" not in responses[1].headers
    assert late.status_code == 503
    assert len(together.colours) == 2  # only the two 200s produced images


async def test_together_hang_outlasts_client_timeout_and_frees_the_slot(
    client: httpx.AsyncClient,
) -> None:
    async with FakeTogether(script_of_statuses=["hang"]) as together:
        async with httpx.AsyncClient(timeout=0.3) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await generate(impatient, together)
        await wait_until(lambda: together.in_flight == 0)
        retry = await generate(client, together)

    assert retry.status_code == 200
    hung = together.requests[0]
    assert hung.status == CLIENT_CLOSED
    assert hung.t_end is not None and hung.t_end - hung.t_start >= 0.3
    assert together.overlaps == 0


async def test_together_fault_rate_is_reproducible(client: httpx.AsyncClient) -> None:
    async def statuses(**kw: Any) -> list[int]:
        async with FakeTogether(**kw) as together:
            return [(await generate(client, together)).status_code for _ in range(16)]

    first = await statuses(fault_rate=0.5, seed=123)
    assert first == await statuses(fault_rate=0.5, seed=123)
    assert 200 in first and set(first) - {200}
    assert set(first) <= {200, 429, 500, 502, 503}
    assert await statuses(fault_rate=1.0, fault_kinds=[502]) == [502] * 16
    assert await statuses(fault_rate=0.0) == [200] * 16


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"response_format": "b64_json"}, "body.response_format: 'b64_json' is not one of"),
        ({"respones_format": "url"}, "body.respones_format: not a field of the published"),
        ({"output_format": "gif"}, "body.output_format: 'gif' is not one of ['jpeg', 'png']"),
        ({"height": "big"}, "body.height: 'big' is not of type 'integer'"),
        ({"model": "black-forest-labs/FLUX-typo"}, "body.model: 'black-forest-labs/FLUX-typo'"),
    ],
)
async def test_together_refuses_requests_outside_the_contract_naming_the_field(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    async with FakeTogether() as together:
        response = await generate(client, together, **overrides)
        not_json = await client.post(
            f"{together.base_url}/images/generations", content=b"{", headers=AUTH
        )
        assert len(together.violations) == 2
        together.violations.clear()  # refused on purpose: taken back before the fake closes
    assert field in assert_error_shape(response, 400)["message"]
    assert "body: None is not of type 'object'" in assert_error_shape(not_json, 400)["message"]
    assert together.colours == []


async def test_a_request_outside_the_contract_fails_the_test_that_sent_it(
    client: httpx.AsyncClient,
) -> None:
    with pytest.raises(AssertionError, match=r"left the published contract:\n.*body\.stpes"):
        async with FakeTogether() as together:
            await generate(client, together, stpes=4)


# --- FakeSpeech ------------------------------------------------------------------------------


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip())


@pytest.mark.parametrize(
    ("text", "speed", "expected"),
    [
        ("Hello world, this is a test of the narration.", 1.0, 0.06 * 45),
        ("x" * 100, 1.5, 0.06 * 100 / 1.5),
        ("Hi", 1.0, 0.5),  # the minimum
    ],
    ids=["sentence", "fast-speech", "minimum"],
)
async def test_speech_wav_duration_follows_formula(
    client: httpx.AsyncClient, tmp_path: Path, text: str, speed: float, expected: float
) -> None:
    async with FakeSpeech() as speech:
        r = await client.post(
            f"{speech.base_url}/audio/speech", json=speech_body(text, speed=speed)
        )

    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(r.content), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        samples = array("h", w.readframes(w.getnframes()))
    assert wav_duration(r.content) == pytest.approx(expected, abs=1 / 24000)
    assert max(abs(s) for s in samples) > 1000  # an audible tone, not digital silence
    wav_path = tmp_path / "speech.wav"
    wav_path.write_bytes(r.content)
    assert ffprobe_duration(wav_path) == pytest.approx(expected, abs=0.01)
    (rec,) = speech.requests
    assert rec.json == speech_body(text, speed=speed)
    assert rec.audio_seconds == pytest.approx(expected, abs=1 / 24000)


async def test_speech_requests_are_all_in_flight_at_once(client: httpx.AsyncClient) -> None:
    async with FakeSpeech(latency=0.2, latency_per_char=0.01) as speech:
        url = f"{speech.base_url}/audio/speech"
        texts = [f"Scene number {i}." for i in range(6)]
        responses = await asyncio.gather(*(client.post(url, json=speech_body(t)) for t in texts))

    assert [r.status_code for r in responses] == [200] * 6
    assert speech.max_in_flight == 6
    ends = [rec.t_end for rec in speech.requests]
    assert all(end is not None for end in ends)
    assert max(rec.t_start for rec in speech.requests) < min(e for e in ends if e is not None)
    for rec in speech.requests:
        assert rec.t_end is not None and rec.t_end - rec.t_start >= 0.2 + 0.01 * 15


@pytest.mark.parametrize("response_format", ["mp3", "opus", None])
async def test_speech_rejects_non_wav(
    client: httpx.AsyncClient, response_format: str | None
) -> None:
    body = speech_body("Hello.", response_format=response_format)
    if response_format is None:
        del body["response_format"]
    async with FakeSpeech() as speech:
        r = await client.post(f"{speech.base_url}/audio/speech", json=body)
    assert "serves only wav" in kokoro_error(r, 400)


async def test_speech_down_answers_503_until_back_up(client: httpx.AsyncClient) -> None:
    async with FakeSpeech(down=True) as speech:
        url = f"{speech.base_url}/audio/speech"
        down = await client.post(url, json=speech_body("Hello."))
        speech.down = False
        up = await client.post(url, json=speech_body("Hello."))
    assert kokoro_error(down, 503) == "Service unavailable"
    assert up.status_code == 200


async def test_closed_port_refuses_connections(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.post(f"{closed_base_url()}/audio/speech", json=speech_body("Hello."))


async def test_restart_keeps_the_same_base_url(client: httpx.AsyncClient) -> None:
    speech = FakeSpeech()
    async with speech:
        url = speech.base_url
    with pytest.raises(httpx.ConnectError):
        await client.post(f"{url}/audio/speech", json=speech_body("Hello."))
    async with speech:
        assert speech.base_url == url
        r = await client.post(f"{url}/audio/speech", json=speech_body("Hello."))
    assert r.status_code == 200


# --- CLI mode --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "args", "path", "body"),
    [
        ("tests.fakes.together", ["--latency", "0.05"], "/images/generations", image_body()),
        ("tests.fakes.speech", ["--latency", "0.05"], "/audio/speech", speech_body("Hello.")),
    ],
)
async def test_cli_prints_base_url_and_serves(
    client: httpx.AsyncClient, module: str, args: list[str], path: str, body: dict[str, Any]
) -> None:
    cmd = [sys.executable, "-m", module, "--port", "0", *args]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)
            base_url = line.strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
            response = await client.post(base_url + path, json=body, headers=AUTH)
            state = (await client.get(base_url.removesuffix("/v1") + "/_fake/state")).json()
        finally:
            proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert response.status_code == 200
    assert [r["status"] for r in state["requests"]] == [200]
    assert state["requests"][0]["json"] == body
