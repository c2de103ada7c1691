"""What kind of picture a file really is, from its first bytes (never from its name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "ImageType", "image_type", "image_type_of"]


@dataclass(frozen=True)
class ImageType:
    name: str  # "PNG", "JPEG", "WebP"
    suffix: str  # the file name extension that says so
    content_type: str


PNG = ImageType("PNG", ".png", "image/png")
JPEG = ImageType("JPEG", ".jpg", "image/jpeg")
WEBP = ImageType("WebP", ".webp", "image/webp")
IMAGE_SUFFIXES = (PNG.suffix, JPEG.suffix, WEBP.suffix)


def image_type(head: bytes) -> ImageType | None:
    """PNG, JPEG or WebP by their signatures; None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def image_type_of(path: Path) -> ImageType | None:
    with path.open("rb") as file:
        return image_type(file.read(16))
