"""The loopback fakes of tests/fakes, run in this process, with photo-like pictures."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.config import Secrets, Settings
from tests.fakes.server import RecordedRequest, error_response
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import BadRequest, FakeTogether, parse_image_request

from .media import photo_pool

BENCH_KEY = "bench-not-a-real-key"


class PhotoTogether(FakeTogether):
    """FakeTogether answering photo-like pictures instead of flat colours, so that a clip costs
    the encoder what a clip of a real picture costs. The pictures are made before the clock
    starts; answering one costs a base64 encoding."""

    def __init__(self, *, sizes: list[tuple[int, int]], **knobs: Any) -> None:
        super().__init__(**knobs)
        self.pictures = {size: photo_pool(*size) for size in sizes}

    async def _generate(self, rec: RecordedRequest) -> web.Response:
        try:
            model, width, height, n = parse_image_request(rec.json)
        except BadRequest as exc:
            return error_response(400, str(exc), "invalid_request_error")
        pool = self.pictures.get((width, height)) or photo_pool(width, height)
        await asyncio.sleep(self.latency)
        picture = pool[self.successes % len(pool)]
        self.successes += 1
        b64 = base64.b64encode(picture).decode("ascii")
        data = [{"index": i, "b64_json": b64, "timings": {"inference": self.latency}}
                for i in range(n)]  # fmt: skip
        return web.json_response(
            {"id": f"fake-{self.successes:06d}", "model": model, "object": "list", "data": data}
        )


@dataclass(frozen=True)
class Latencies:
    image: float  # seconds per image; the fake serves one at a time (429 to any overlap)
    tts: float  # seconds per speech request ...
    tts_per_char: float  # ... plus this per character of narration


@asynccontextmanager
async def fake_services(
    latencies: Latencies, *, sizes: list[tuple[int, int]]
) -> AsyncIterator[tuple[PhotoTogether, FakeSpeech]]:
    together = PhotoTogether(sizes=sizes, latency=latencies.image, expected_key=BENCH_KEY)
    speech = FakeSpeech(latency=latencies.tts, latency_per_char=latencies.tts_per_char)
    async with together, speech:
        yield together, speech


def bench_settings(together: FakeTogether, speech: FakeSpeech, data_dir: Path) -> Settings:
    """The default settings, with the fakes as providers and a fresh data directory (so no
    artifact is reused from another run)."""
    return Settings(
        images={"provider": "together", "base_url": together.base_url,
                "backoff_base": 0.05, "backoff_max": 0.5},
        tts={"provider": "openai", "base_url": speech.base_url},
        storage={"data_dir": str(data_dir)},
        secrets=Secrets.model_validate({"TOGETHER_API_KEY": BENCH_KEY}),
    )  # fmt: skip
