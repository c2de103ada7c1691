"""A storyboard: every scene's image on one numbered contact sheet, to post as one picture.

    ┌────┬────┬────┐   cells in reading order (left to right, top to bottom), each the scene's
    │1   │2   │3   │   image scaled to fit, with its number in a badge in the top-left corner,
    │    │    │    │   well away from the cell's centre
    └────┴────┴────┘

The geometry is computed by `storyboard_layout` alone (no font metrics), so a caller or a test
knows where every cell is. Making the sheet is CPU work for Pillow: from async code call
`make_storyboard` through `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont, ImageOps

from .errors import ReelbotError
from .events import JobStarted, ProgressEvent, SceneEvent, Stage, Status

__all__ = [
    "MAX_BYTES",
    "Box",
    "StoryboardLayout",
    "make_storyboard",
    "scene_images",
    "storyboard_layout",
]

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)

CELL_WIDTH: Final = 320  # pixels per cell, at most
SHEET_WIDTH: Final = 2000  # with many columns, cells shrink to keep the sheet about this wide
MAX_COLUMNS: Final = 8
MAX_BYTES: Final = 2_000_000  # a JPEG sheet is re-encoded at lower quality until it fits
JPEG_QUALITIES: Final = (85, 75, 65, 55, 45)
BACKGROUND: Final = (17, 17, 17)
CELL_BACKGROUND: Final = (34, 34, 34)
BADGE_FILL: Final = (0, 0, 0, 190)
BADGE_TEXT: Final = (255, 255, 255, 255)
BADGE_FONTS: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
)
FORMATS: Final = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


@dataclass(frozen=True, slots=True)
class StoryboardLayout:
    """Where everything goes on a sheet of `count` cells of `cell_width` x `cell_height`."""

    count: int
    columns: int
    rows: int
    cell_width: int
    cell_height: int
    gap: int  # between cells and around the sheet
    width: int
    height: int
    cells: tuple[Box, ...]  # one per scene, in scene order
    badges: tuple[Box, ...]  # the number badge of each cell (top-left corner)

    def centre(self, index: int) -> tuple[int, int]:
        """The centre pixel of cell `index` (0-based)."""
        left, top, right, bottom = self.cells[index]
        return (left + right) // 2, (top + bottom) // 2


def storyboard_layout(
    count: int,
    image_size: tuple[int, int],
    *,
    columns: int | None = None,
    cell_width: int | None = None,
) -> StoryboardLayout:
    """The grid for `count` images of `image_size` (width, height).

    Cells have the images' aspect ratio. Without `columns`, the column count (1 to 8) makes the
    whole sheet closest to square, which a phone shows largest in a chat (a tall sheet is
    shrunk to fit the screen's height, a wide one to its width), with a penalty for empty
    cells in the last row: 3 portrait images sit in one row, 3 landscape ones in one column,
    6 portrait ones as 3 x 2, 9 portrait ones as 5 + 4. Without `cell_width`, cells are
    `CELL_WIDTH` wide, or narrower when that many columns would make the sheet wider than
    `SHEET_WIDTH`."""
    if count < 1:
        raise ValueError("a storyboard needs at least one image")
    image_width, image_height = image_size
    if image_width < 1 or image_height < 1:
        raise ValueError(f"bad image size {image_size}")
    aspect = image_width / image_height
    if columns is None:
        columns = _best_columns(count, aspect)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    if cell_width is None:
        cell_width = min(CELL_WIDTH, SHEET_WIDTH // columns - 8)
    if cell_width < 16:
        raise ValueError("cell_width must be at least 16 pixels")
    cell_height = max(1, round(cell_width / aspect))
    gap = max(4, cell_width // 40)
    cells: list[Box] = []
    badges: list[Box] = []
    badge = max(20, round(min(cell_width, cell_height) * 0.16))
    inset = max(4, badge // 4)
    for index in range(count):
        row, column = divmod(index, columns)
        left = gap + column * (cell_width + gap)
        top = gap + row * (cell_height + gap)
        cells.append((left, top, left + cell_width, top + cell_height))
        digits = len(str(index + 1))
        badge_width = badge + round(badge * 0.45 * (digits - 1))
        badges.append((left + inset, top + inset, left + inset + badge_width, top + inset + badge))
    return StoryboardLayout(
        count=count,
        columns=columns,
        rows=rows,
        cell_width=cell_width,
        cell_height=cell_height,
        gap=gap,
        width=gap + columns * (cell_width + gap),
        height=gap + rows * (cell_height + gap),
        cells=tuple(cells),
        badges=tuple(badges),
    )


def _best_columns(count: int, aspect: float) -> int:
    def cost(columns: int) -> float:
        rows = math.ceil(count / columns)
        empty = rows * columns - count
        return abs(math.log(columns * aspect / rows)) + 0.5 * empty / columns

    return min(range(1, min(count, MAX_COLUMNS) + 1), key=lambda c: (cost(c), c))


def make_storyboard(
    images: Sequence[Path],
    out: Path,
    *,
    columns: int | None = None,
    cell_width: int | None = None,
) -> Path:
    """Draw `images` (scene 1 first) as a numbered grid and write it to `out`.

    The format comes from the extension: `.jpg`/`.jpeg` (recommended: re-encoded at lower
    quality until it is under `MAX_BYTES`, well within Discord's 10 MiB) or `.png`. The grid is
    `storyboard_layout(len(images), <size of the first image>, columns=…, cell_width=…)`; each
    image is scaled to fit its cell (letterboxed if its shape differs). The file is written
    under a temporary name and renamed, so `out` is complete or absent. Returns `out`."""
    image_format = FORMATS.get(out.suffix.lower())
    if image_format is None:
        raise ValueError(f"a storyboard is a .jpg or .png file, not {out.name!r}")
    if not images:
        raise ValueError("a storyboard needs at least one image")
    first_size = _size(images[0])
    layout = storyboard_layout(len(images), first_size, columns=columns, cell_width=cell_width)
    sheet = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    for path, cell in zip(images, layout.cells, strict=True):
        _paste(sheet, path, cell)
    overlay = Image.new("RGBA", sheet.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for number, badge in enumerate(layout.badges, 1):
        _badge(draw, badge, str(number))
    sheet = Image.alpha_composite(sheet.convert("RGBA"), overlay).convert("RGB")
    data = _encode(sheet, image_format)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    try:
        temp.write_bytes(data)
        temp.replace(out)
    finally:
        temp.unlink(missing_ok=True)
    return out


def scene_images(events: Iterable[ProgressEvent]) -> list[Path] | None:
    """Every scene's image path in scene order, once every scene's image is done (made or
    reused from the cache); None before that. For a front end that posts the storyboard as
    soon as the images are done, while the clips are still encoding."""
    count = 0
    found: dict[int, Path] = {}
    for event in events:
        if isinstance(event, JobStarted):
            count = event.scenes
        elif (
            isinstance(event, SceneEvent)
            and event.stage is Stage.IMAGE
            and event.status in (Status.DONE, Status.CACHED)
            and event.path is not None
        ):
            found[event.scene] = event.path
    if count == 0 or any(n not in found for n in range(1, count + 1)):
        return None
    return [found[n] for n in range(1, count + 1)]


# ---------------------------------------------------------------- drawing


def _size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, Image.DecompressionBombError) as exc:
        raise ReelbotError(f"cannot read the scene image {path.name}: {exc}") from None


def _paste(sheet: Image.Image, path: Path, cell: Box) -> None:
    left, top, right, bottom = cell
    width, height = right - left, bottom - top
    try:
        with Image.open(path) as image:
            image.draft("RGB", (width, height))  # JPEG: decode at a reduced size when possible
            fitted = ImageOps.contain(image.convert("RGB"), (width, height),
                                      Image.Resampling.LANCZOS)  # fmt: skip
    except (OSError, Image.DecompressionBombError) as exc:
        raise ReelbotError(f"cannot read the scene image {path.name}: {exc}") from None
    if fitted.size != (width, height):
        sheet.paste(CELL_BACKGROUND, cell)
    sheet.paste(fitted, (left + (width - fitted.width) // 2, top + (height - fitted.height) // 2))


def _badge(draw: ImageDraw.ImageDraw, box: Box, text: str) -> None:
    left, top, right, bottom = box
    height = bottom - top
    draw.rounded_rectangle(box, radius=height // 2, fill=BADGE_FILL)
    font = _font(max(10, round(height * 0.62)))
    draw.text(((left + right) / 2, (top + bottom) / 2), text, font=font, fill=BADGE_TEXT,
              anchor="mm")  # fmt: skip


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in BADGE_FONTS:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def _encode(sheet: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "PNG":
        sheet.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()
    for quality in JPEG_QUALITIES:
        buffer = io.BytesIO()
        sheet.save(buffer, format="JPEG", quality=quality, optimize=True, progressive=True)
        if buffer.tell() <= MAX_BYTES:
            break
    return buffer.getvalue()
