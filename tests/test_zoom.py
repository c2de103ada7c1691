"""The Ken Burns zoom made by crops and swscale: its plan, and the frames ffmpeg makes from it."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from bench.encode import track_dots
from bench.media import dot_chart
from pipeline.aspect import Aspect, Size
from pipeline.config import VideoConfig
from pipeline.errors import MediaError
from pipeline.video import ClipSpec, clip_argv, picture_box
from pipeline.zoom import PAD, TOLERANCE, AxisStep, commands, plan_zoom, zoom_at
from tests.fakes.audio import make_wav

from .media import ffprobe, packet_count


def _shown(step: AxisStep, origin: int, picture_side: int, copy_side: int,
           frame: int) -> tuple[float, float]:  # fmt: skip
    """Where (in the picture's pixels) swscale's crop and scale put the first and the last
    pixel of the frame, recomputed here from its own fixed-point arithmetic."""
    fixed = ((step.size << 16) + (step.scaled >> 1)) // step.scaled
    start = step.start - origin  # in the copy

    def at(x: int) -> float:
        position = start + (x + step.skip + 0.5) * fixed / 65536 - 0.5
        if copy_side == picture_side:
            return position
        back = ((picture_side << 16) + (copy_side >> 1)) // copy_side  # copy -> picture
        return (position + 0.5) * back / 65536 - 0.5

    return at(0), at(frame - 1)


@pytest.mark.parametrize("aspect", list(Aspect))
@pytest.mark.parametrize("zoom", [1.0, 1.12, 1.3])
def test_every_frame_of_the_plan_shows_the_exact_zoom(aspect: Aspect, zoom: float) -> None:
    picture, frame = aspect.image, aspect.frame
    plan = plan_zoom(picture, frame, 243, zoom)
    canvas = plan.canvas
    assert len(plan.frames) == 243
    for n, step in enumerate(plan.frames):
        z = zoom_at(n, 243, zoom)
        copy, top = canvas.copies[step.copy], canvas.top(step.copy)
        for axis, side, copy_side, origin, out in (
            (step.x, picture.width, copy.width, PAD, frame.width),
            (step.y, picture.height, copy.height, top, frame.height),
        ):
            # The exact zoom: the centred rectangle side/z, pixel centres at +0.5.
            exact_first = side / 2 - side / z / 2 + side / z / out / 2 - 0.5
            exact_last = side / 2 + side / z / 2 - side / z / out / 2 - 0.5
            first, last = _shown(axis, origin, side, copy_side, out)
            assert abs(first - exact_first) <= 1.5 * TOLERANCE, (n, axis)
            assert abs(last - exact_last) <= 1.5 * TOLERANCE, (n, axis)
            # The crop stays in its copy's padded place; the last crop inside the scaled frame.
            assert origin - PAD <= axis.start and axis.start + axis.size <= origin + copy_side + PAD
            assert axis.skip % 2 == 0 and axis.skip + out <= axis.scaled
    assert len(commands(plan, 30).splitlines()) == 243


def test_the_plan_reads_a_copy_only_where_a_simple_ratio_is_near() -> None:
    """576 pixels zoomed into 1080 pass 1/2 at z = 16/15: no fraction of whole sizes near
    the frame's is close enough there, so those frames read a scaled copy."""
    picture, frame = Size(576, 1024), Size(1080, 1920)
    plan = plan_zoom(picture, frame, 243, 1.12)
    assert plan.canvas.copies[0] == picture and len(plan.canvas.copies) > 1
    copied = [n for n, s in enumerate(plan.frames) if s.copy > 0]
    assert 0 < len(copied) < 243 / 3
    half = min(range(243), key=lambda n: abs(576 / (1080 * zoom_at(n, 243, 1.12)) - 0.5))
    assert {half - 1, half + 1} <= set(copied)
    # Cheap: the scaled frame is on average within a sixth of the frame's pixels.
    area = sum(s.x.scaled * s.y.scaled for s in plan.frames) / 243 / (1080 * 1920)
    assert area < 1.2
    # No zoom: the picture scaled straight to the frame, nothing cropped.
    still = plan_zoom(picture, frame, 30, 1.0)
    assert {(s.x.size, s.x.scaled, s.y.size, s.y.scaled) for s in still.frames} == {
        (576, 1080, 1024, 1920)
    }
    assert still.canvas.copies == (picture,)


@pytest.mark.parametrize("aspect", [Aspect.PORTRAIT, Aspect.SQUARE])
def test_the_clip_follows_the_exact_zoom_frame_by_frame(tmp_path: Path, aspect: Aspect) -> None:
    """A dot chart through the shipped clip recipe at the real frame size (crf 1): every dot
    is where the exact zoom puts it in every frame, to a tenth of a pixel. A crop or a size
    landing one frame early or late, or a crop clamped to a stale size, moves dots by whole
    pixels; a copy of the picture misplaced in the canvas, by more."""
    picture, frame = aspect.image, aspect.frame
    chart = dot_chart(*picture)
    chart.image.save(tmp_path / "chart.png")
    (tmp_path / "a.wav").write_bytes(make_wav(1.2))
    spec = ClipSpec(tmp_path / "chart.png", tmp_path / "a.wav", 1.2, frame, VideoConfig(crf=1))
    plan = plan_zoom(picture, frame, spec.frames, spec.config.zoom)
    assert any(step.copy > 0 for step in plan.frames)  # the canvas of copies is exercised
    out = tmp_path / "dots.mp4"
    subprocess.run(clip_argv(spec, out), check=True, timeout=300)
    assert packet_count(out) == spec.frames
    video = ffprobe(out).stream("video")
    assert (video["width"], video["height"], video["pix_fmt"]) == (*frame, "yuv420p")
    result = track_dots(out, frame, picture, chart.dots, spec.config.zoom)
    assert result.path_error < 0.1 and result.step_error < 0.1, result


def test_a_picture_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not.png").write_text("not a picture")
    spec = ClipSpec(tmp_path / "not.png", tmp_path / "a.wav", 1.0, Size(1080, 1920),
                    VideoConfig())  # fmt: skip
    with pytest.raises(MediaError, match=r"^the picture not.png cannot be read \(not a picture\)$"):
        clip_argv(spec, tmp_path / "out.mp4")
    # A picture of a few pixels (`[limits] image_min_side` can allow one) has no zoom.
    Image.new("RGB", (3, 2)).save(tmp_path / "dot.png")
    tiny = replace(spec, image=tmp_path / "dot.png")
    with pytest.raises(MediaError, match=r"^the picture dot.png \(3×2 px\) is too small to fill"):
        clip_argv(tiny, tmp_path / "out.mp4")


@pytest.mark.parametrize(
    ("image", "frame", "box", "picture"),
    [
        (Size(576, 1024), Size(1080, 1920), Size(576, 1024), Size(576, 1024)),
        (Size(1024, 1024), Size(1080, 1920), Size(576, 1024), Size(576, 1024)),
        (Size(4000, 3000), Size(1920, 1080), Size(4000, 2250), Size(1920, 1080)),
        (Size(801, 601), Size(1080, 1080), Size(600, 600), Size(600, 600)),
    ],
)
def test_the_picture_is_the_centred_box_of_the_frames_shape(
    image: Size, frame: Size, box: Size, picture: Size
) -> None:
    assert picture_box(image, frame) == (box, picture)
