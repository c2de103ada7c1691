from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..image_slot import ImageKey

# Told when a provider waits before trying again: (seconds, why), e.g.
# (40.0, "waiting for Together's rate limit (40 s)").
WaitSink = Callable[[float, str], None]


@dataclass(frozen=True)
class ImageRequest:
    scene: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    steps: int | None  # None: the API's default for the model
    model: str


class ImageProvider(Protocol):
    """Draws the image for one request into a file at `out`: PNG, JPEG or WebP, whatever the
    name of `out` says (the caller names the file by its real type afterwards). Each wait
    before a retry is told to `on_wait`. `key` is the key the image slot gave the request
    (a provider that needs none ignores it); a key the service refuses raises KeyRefused.

    The render decodes the written picture to check it (`artifact_checks.check_image_file`),
    unless the provider has a true `checks_pictures` attribute: it has checked every picture
    with `check_image` before writing it, and the image slot need not wait for a second
    decode."""

    @property
    def name(self) -> str: ...

    async def generate(
        self,
        request: ImageRequest,
        out: Path,
        *,
        on_wait: WaitSink | None = None,
        key: ImageKey | None = None,
    ) -> None: ...
