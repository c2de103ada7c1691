"""The loopback fakes of tests/fakes, run in this process, with photo-like pictures."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.config import Secrets, Settings
from tests.fakes.server import Colour
from tests.fakes.speech import FakeSpeech
from tests.fakes.together import FakeTogether, ImageFormat

from .media import photo_pool

BENCH_KEY = "bench-not-a-real-key"


class PhotoTogether(FakeTogether):
    """FakeTogether answering photo-like pictures instead of flat colours, so that a clip costs
    the encoder what a clip of a real picture costs. The pictures are made before the clock
    starts; answering one costs a base64 encoding. Requests are checked against the published
    contract as FakeTogether checks them."""

    def __init__(self, *, sizes: list[tuple[int, int]], **knobs: Any) -> None:
        super().__init__(**knobs)
        self.pictures = {size: photo_pool(*size) for size in sizes}

    def picture(self, width: int, height: int, colour: Colour, image_format: ImageFormat) -> bytes:
        pool = self.pictures.get((width, height)) or photo_pool(width, height)
        picture = pool[(self.successes - 1) % len(pool)]  # a PNG, what reelbot asks for
        if image_format == "PNG":
            return picture
        out = io.BytesIO()  # asked for another format: answer in it, as the service does
        Image.open(io.BytesIO(picture)).convert("RGB").save(out, format=image_format)
        return out.getvalue()


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
