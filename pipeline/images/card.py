"""Offline storyboard cards: the embedded default when no image API key is set."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..image_slot import ImageKey
from .base import ImageRequest, WaitSink

# Fonts tried in order; the first covers Latin, Greek, Cyrillic and CJK.
FONT_FILES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
PALETTE = (
    (38, 70, 83), (42, 157, 143), (87, 117, 144), (109, 89, 122),
    (181, 101, 118), (229, 107, 111), (65, 90, 119), (53, 80, 112),
)  # fmt: skip

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class CardImages:
    name = "card"

    async def generate(
        self,
        request: ImageRequest,
        out: Path,
        *,
        on_wait: WaitSink | None = None,
        key: ImageKey | None = None,
    ) -> None:
        await asyncio.to_thread(draw_card, request, out)


def card_colour(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def draw_card(request: ImageRequest, out: Path) -> None:
    width, height = request.width, request.height
    background = card_colour(request.prompt)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    margin = width // 12
    # A frame inset from the edges, like a storyboard panel.
    draw.rectangle(
        (margin // 2, margin // 2, width - margin // 2, height - margin // 2),
        outline=(255, 255, 255),
        width=max(2, width // 200),
    )
    title_font = _font(width // 9)
    body_font = _font(width // 22)
    y = height // 5
    draw.text((margin, y), f"Scene {request.scene}", font=title_font, fill=(255, 255, 255))
    y += int(width / 9 * 1.6)
    chars_per_line = max(12, int((width - 2 * margin) / (width / 22 * 0.55)))
    lines = textwrap.wrap(request.prompt, chars_per_line)[:14]
    for line in lines:
        draw.text((margin, y), line, font=body_font, fill=(240, 240, 240))
        y += int(width / 22 * 1.45)
    image.save(out, format="PNG")


@cache
def _font(size: int) -> Font:
    for path in FONT_FILES:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size)
