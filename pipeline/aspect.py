"""Aspect presets: the output frame and the image size asked of the image API."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Size(NamedTuple):
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class Aspect(StrEnum):
    PORTRAIT = "9:16"
    LANDSCAPE = "16:9"
    SQUARE = "1:1"

    @property
    def frame(self) -> Size:
        """The video frame."""
        return _FRAMES[self]

    @property
    def image(self) -> Size:
        """The image size requested from the API: same shape, sides multiples of 16 (FLUX)."""
        return _IMAGES[self]

    @classmethod
    def parse(cls, text: str) -> Aspect:
        cleaned = text.strip().replace("x", ":").replace("/", ":")
        for aspect in cls:
            if aspect.value == cleaned:
                return aspect
        choices = ", ".join(a.value for a in cls)
        raise ValueError(f"unknown aspect {text.strip()!r} (choose {choices})")


_FRAMES = {
    Aspect.PORTRAIT: Size(1080, 1920),
    Aspect.LANDSCAPE: Size(1920, 1080),
    Aspect.SQUARE: Size(1080, 1080),
}
_IMAGES = {
    Aspect.PORTRAIT: Size(576, 1024),
    Aspect.LANDSCAPE: Size(1024, 576),
    Aspect.SQUARE: Size(1024, 1024),
}
