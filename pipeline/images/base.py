from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ImageRequest:
    scene: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    steps: int
    model: str


class ImageProvider(Protocol):
    """Draws the image for one request into a PNG/JPEG file at `out`."""

    @property
    def name(self) -> str: ...

    async def generate(self, request: ImageRequest, out: Path) -> None: ...
