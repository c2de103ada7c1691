"""Fitting a video into an upload limit (`pipeline/fit.py`): the bitrate arithmetic, the ffmpeg
argv, and a real re-encode of a video that does not compress well."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.fit import AUDIO_KBPS, MIN_VIDEO_KBPS, fit_argv, fit_to_limit, plan_fit
from tests.media import ffprobe

MIB = 1024 * 1024


def test_the_bitrate_is_the_target_over_the_duration_minus_the_audio() -> None:
    plan = plan_fit(9 * MIB, 60.0, 1080, 1920, 30)
    assert plan is not None
    assert plan.video_kbps == int(9 * MIB * 8 / 60 / 1000 - AUDIO_KBPS)  # 1194
    assert plan.audio_kbps == AUDIO_KBPS
    # The largest frame that bitrate carries well: 0.02 bits per pixel per frame at 30 fps.
    pixels = plan.width * plan.height
    assert pixels == pytest.approx(1194_000 / (0.02 * 30), rel=0.02)
    assert plan.width / plan.height == pytest.approx(1080 / 1920, rel=0.01)


def test_a_lower_bitrate_gets_a_smaller_frame() -> None:
    plans = [plan_fit(9 * MIB, seconds, 1080, 1920, 30) for seconds in (20, 60, 150, 400)]
    widths = [p.width for p in plans if p is not None]
    assert widths[0] == 1080  # 3.7 Mbit/s carries the whole frame
    assert widths == sorted(widths, reverse=True) and len(set(widths)) == 4
    slower = plan_fit(9 * MIB, 150, 1080, 1920, 15)  # half the frames: twice the pixels each
    assert slower is not None and slower.width > widths[2]


def test_a_frame_is_never_scaled_up_and_stays_even() -> None:
    plan = plan_fit(50 * MIB, 10.0, 333, 591)
    assert plan is not None
    assert plan.width % 2 == 0 and plan.height % 2 == 0  # what yuv420p needs
    assert abs(plan.width - 333) <= 1 and abs(plan.height - 591) <= 1


def test_an_absurdly_low_bitrate_means_too_long_to_fit() -> None:
    assert plan_fit(9 * MIB, 3600.0, 1080, 1920) is None  # an hour in 10 MB
    seconds = 9 * MIB * 8 / 1000 / (AUDIO_KBPS + MIN_VIDEO_KBPS)
    assert plan_fit(9 * MIB, seconds * 0.99, 1080, 1920) is not None
    assert plan_fit(9 * MIB, seconds * 1.01, 1080, 1920) is None


def test_the_argv_is_built_by_ffmpeg_python_never_a_shell(tmp_path: Path) -> None:
    plan = plan_fit(8 * MIB, 30.0, 1080, 1920)
    assert plan is not None
    argv = fit_argv(tmp_path / "in put.mp4", tmp_path / "out.mp4", plan, preset="veryfast")
    assert argv[0] == "ffmpeg" and argv[argv.index("-i") + 1] == str(tmp_path / "in put.mp4")
    assert argv[argv.index("-b:v") + 1] == f"{plan.video_kbps}k"
    assert argv[argv.index("-maxrate") + 1] == f"{2 * plan.video_kbps}k"  # a loose peak cap
    assert argv[argv.index("-b:a") + 1] == f"{AUDIO_KBPS}k"
    assert f"scale={plan.width}:{plan.height}" in argv[argv.index("-filter_complex") + 1]
    assert "+faststart" in argv and str(tmp_path / "out.mp4") in argv


def noisy_video(path: Path, seconds: int = 4) -> Path:
    """A video that does not compress well (noise), so the bitrate really is spent."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", f"testsrc2=size=540x960:rate=15:duration={seconds}", "-f", "lavfi",
         "-i", f"sine=frequency=300:duration={seconds}", "-vf", "noise=alls=40:allf=t",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-c:a", "aac", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("limit", [200 * 1024, 90 * 1024])
async def test_a_re_encode_uses_85_to_95_percent_of_the_allowance(
    tmp_path: Path, limit: int
) -> None:
    source = noisy_video(tmp_path / "noisy.mp4")
    assert source.stat().st_size > 3 * limit
    out = await fit_to_limit(source, tmp_path / "fit.mp4", limit, duration=4.0,
                             preset="veryfast", timeout=120)  # fmt: skip
    assert out is not None
    assert 0.85 * limit <= out.stat().st_size <= 0.95 * limit, out.stat().st_size / limit
    probe = ffprobe(out)
    assert probe.duration == pytest.approx(4.0, abs=0.2)
    video = probe.stream("video")
    assert video["codec_name"] == "h264" and probe.stream("audio")["codec_name"] == "aac"
    # The largest frame the bitrate carries well, never larger than the video's own: the whole
    # 540x960 at 200 KB; at 90 KB a smaller one, the shape kept, about 0.02 bits per pixel.
    width, height = video["width"], video["height"]
    if limit == 200 * 1024:
        assert (width, height) == (540, 960)
    else:
        assert width < 540 and width / height == pytest.approx(540 / 960, abs=0.01)
        video_bits = out.stat().st_size * 8 / 4.0 - AUDIO_KBPS * 1000
        assert 0.015 <= video_bits / (width * height * 15) <= 0.03
    assert not list(tmp_path.glob("*.try.mp4"))  # attempts are cleaned up


async def test_a_video_that_cannot_fit_is_refused(tmp_path: Path) -> None:
    source = noisy_video(tmp_path / "noisy.mp4", seconds=2)
    assert (await fit_to_limit(source, tmp_path / "no.mp4", 2_000, duration=2.0,
                               preset="veryfast", timeout=120)) is None  # fmt: skip
    assert not (tmp_path / "no.mp4").exists()
