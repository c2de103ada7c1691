"""The storyboard: every scene's image on one numbered contact sheet, in order."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from PIL import Image

from pipeline.errors import ReelbotError
from pipeline.events import ProgressEvent
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.storyboard import (
    MAX_BYTES,
    StoryboardLayout,
    make_storyboard,
    scene_images,
    storyboard_layout,
)
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory

API_KEY = "tgp-test-key-0123456789abcdef"
FOUR_SCENES = "\n".join(f"## {n}\nimage: picture number {n}\nScene {n}." for n in range(1, 5))
Colour = tuple[int, int, int]


def mean_colour(image: Image.Image, centre: tuple[int, int], radius: int = 6) -> Colour:
    """The average colour of a small square around `centre` (robust to JPEG noise)."""
    x, y = centre
    patch = image.crop((x - radius, y - radius, x + radius, y + radius)).convert("RGB")
    pixel = patch.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(pixel, tuple)
    r, g, b = pixel
    return int(r), int(g), int(b)


def close(a: Colour, b: Colour, tolerance: int) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def solid(path: Path, size: tuple[int, int], colour: Colour) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


async def test_storyboard_of_a_render_holds_every_scene_in_order(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", API_KEY)
    events: list[ProgressEvent] = []
    async with FakeTogether(latency=0.05) as fake:
        settings = make_settings(images={"provider": "together", "base_url": fake.base_url})
        plan = plan_render(parse_script(FOUR_SCENES), settings)
        result = await render_plan(plan, settings, tmp_path / "v.mp4", on_event=events.append)
    images = [scene.image for scene in result.scenes]
    assert scene_images(events) == images  # what a front end gets from the events alone
    assert len(fake.colours) == 4

    out = make_storyboard(images, tmp_path / "board" / "storyboard.jpg")

    with Image.open(images[0]) as first:
        layout = storyboard_layout(len(images), first.size)
    assert (layout.columns, layout.rows) == (3, 2)  # four portrait images: 3 + 1
    assert out.stat().st_size < MAX_BYTES
    with Image.open(out) as sheet:
        assert sheet.format == "JPEG"
        assert sheet.size == (layout.width, layout.height)
        centres = [mean_colour(sheet, layout.centre(i)) for i in range(len(images))]
        for index, (seen, expected) in enumerate(zip(centres, fake.colours, strict=True)):
            assert close(seen, expected, 12), f"cell {index + 1}: {seen} is not {expected}"
        # Each cell carries its number in a dark badge; the empty sixth cell is background.
        for badge in layout.badges:
            darkest, _ = sheet.crop(badge).convert("L").getextrema()
            assert isinstance(darkest, int) and darkest < 60
        left, top, right, bottom = layout.cells[2]
        empty = (left + (right - left) // 2, bottom + layout.gap + (bottom - top) // 2)
        assert close(mean_colour(sheet, empty), (17, 17, 17), 6)


def test_png_cells_are_exact_and_in_reading_order(tmp_path: Path) -> None:
    colours: list[Colour] = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40),
                             (40, 220, 220)]  # fmt: skip
    images = [solid(tmp_path / f"{i}.png", (640, 360), c) for i, c in enumerate(colours)]

    out = make_storyboard(images, tmp_path / "sheet.png", columns=2, cell_width=200)

    layout = storyboard_layout(5, (640, 360), columns=2, cell_width=200)
    assert (layout.columns, layout.rows, layout.cell_height) == (2, 3, 112)
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.size == (layout.width, layout.height)
        rgb = sheet.convert("RGB")
        for index, colour in enumerate(colours):
            assert rgb.getpixel(layout.centre(index)) == colour
            _, _, right, bottom = layout.cells[index]
            assert rgb.getpixel((right - 2, bottom - 2)) == colour  # scaled to fill the cell
        # reading order: left to right, then top to bottom
        assert [layout.cells[i][:2] for i in range(3)] == [
            (layout.gap, layout.gap),
            (2 * layout.gap + 200, layout.gap),
            (layout.gap, 2 * layout.gap + 112),
        ]


def test_an_image_of_another_shape_is_letterboxed(tmp_path: Path) -> None:
    images = [solid(tmp_path / "a.png", (400, 400), (250, 0, 0)),
              solid(tmp_path / "b.png", (100, 400), (0, 250, 0))]  # fmt: skip
    out = make_storyboard(images, tmp_path / "s.png", cell_width=200)
    layout = storyboard_layout(2, (400, 400), cell_width=200)
    with Image.open(out) as sheet:
        rgb = sheet.convert("RGB")
        assert rgb.getpixel(layout.centre(1)) == (0, 250, 0)
        left, top, _, bottom = layout.cells[1]
        assert rgb.getpixel((left + 5, (top + bottom) // 2)) != (0, 250, 0)  # side bars


@pytest.mark.parametrize(
    ("count", "size", "columns"),
    [
        (1, (576, 1024), 1),
        (2, (576, 1024), 2),
        (3, (576, 1024), 3),  # portrait: one row
        (6, (576, 1024), 3),
        (9, (576, 1024), 5),
        (3, (1024, 576), 1),  # landscape: one column
        (6, (1024, 576), 2),
        (4, (1024, 1024), 2),
        (60, (576, 1024), 8),
    ],
)
def test_columns_keep_the_sheet_near_square(
    count: int, size: tuple[int, int], columns: int
) -> None:
    layout = storyboard_layout(count, size)
    assert layout.columns == columns
    assert 0.4 <= layout.width / layout.height <= 2.5
    assert layout.width <= 2000
    check_geometry(layout)


def check_geometry(layout: StoryboardLayout) -> None:
    assert len(layout.cells) == len(layout.badges) == layout.count
    for cell, badge in zip(layout.cells, layout.badges, strict=True):
        left, top, right, bottom = cell
        assert 0 <= left < right <= layout.width and 0 <= top < bottom <= layout.height
        assert (right - left, bottom - top) == (layout.cell_width, layout.cell_height)
        # The badge sits in the top-left corner, inside the cell, clear of its centre.
        b_left, b_top, b_right, b_bottom = badge
        cx, cy = (left + right) // 2, (top + bottom) // 2
        assert left < b_left < b_right < cx and top < b_top < b_bottom < cy
    for a, b in itertools.combinations(layout.cells, 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # no overlap


def test_two_digit_badges_fit(tmp_path: Path) -> None:
    layout = storyboard_layout(12, (576, 1024), cell_width=120)
    check_geometry(layout)
    assert layout.badges[9][2] - layout.badges[9][0] > layout.badges[8][2] - layout.badges[8][0]


def test_many_noisy_images_stay_small(tmp_path: Path) -> None:
    """Incompressible content is the worst case for the size budget."""
    noise = Image.effect_noise((576, 1024), 90).convert("RGB")
    images = []
    for n in range(24):
        path = tmp_path / f"{n}.bmp"  # quick to write; the content is what matters
        noise.rotate(n * 15).save(path)
        images.append(path)
    out = make_storyboard(images, tmp_path / "s.jpg")
    assert out.stat().st_size <= MAX_BYTES


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        make_storyboard([], tmp_path / "s.jpg")
    good = solid(tmp_path / "a.png", (64, 64), (1, 2, 3))
    with pytest.raises(ValueError, match=r"\.jpg or \.png"):
        make_storyboard([good], tmp_path / "s.gif")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ReelbotError, match=r"cannot read the scene image broken\.png"):
        make_storyboard([good, broken], tmp_path / "s.jpg")
    assert not (tmp_path / "s.jpg").exists()
    assert list(tmp_path.glob(".*part")) == []


def test_scene_images_waits_for_every_image() -> None:
    from pipeline.events import JobStarted, SceneEvent, Stage, Status

    events: list[ProgressEvent] = [
        JobStarted(0.0, "x", 2),
        SceneEvent(0.1, 2, Stage.IMAGE, Status.CACHED, path=Path("b.png")),
        SceneEvent(0.2, 1, Stage.IMAGE, Status.STARTED),
    ]
    assert scene_images(events) is None
    events.append(SceneEvent(0.3, 1, Stage.IMAGE, Status.DONE, path=Path("a.png")))
    assert scene_images(events) == [Path("a.png"), Path("b.png")]
