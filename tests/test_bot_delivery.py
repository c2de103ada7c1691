"""Fitting a video into Discord's upload limit: the bitrate arithmetic, the ffmpeg argv, and a
real re-encode of a video that does not compress well."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.delivery import AUDIO_KBPS, MIN_VIDEO_KBPS, fit_argv, fit_to_limit, format_size, plan_fit
from tests.media import ffprobe

MIB = 1024 * 1024


def test_the_target_bitrate_is_the_limit_over_the_duration_minus_the_audio() -> None:
    plan = plan_fit(10 * MIB, 60.0, 1080, 1920)
    assert plan is not None
    assert plan.video_kbps == int(10 * MIB * 8 * 0.95 / 60 / 1000 - AUDIO_KBPS)  # 1264
    assert plan.audio_kbps == AUDIO_KBPS
    assert (plan.width, plan.height) == (720, 1280)  # a frame that bitrate can carry


@pytest.mark.parametrize(
    ("seconds", "frame"),
    [(20.0, (1080, 1920)), (60.0, (720, 1280)), (150.0, (540, 960)), (400.0, (360, 640))],
)
def test_a_lower_bitrate_gets_a_smaller_frame(seconds: float, frame: tuple[int, int]) -> None:
    plan = plan_fit(10 * MIB, seconds, 1080, 1920)
    assert plan is not None and (plan.width, plan.height) == frame


def test_a_frame_is_never_scaled_up_and_stays_even() -> None:
    plan = plan_fit(50 * MIB, 10.0, 333, 591)
    assert plan is not None
    assert plan.width % 2 == 0 and plan.height % 2 == 0  # what yuv420p needs
    assert abs(plan.width - 333) <= 1 and abs(plan.height - 591) <= 1


def test_an_absurdly_low_bitrate_means_too_long_to_fit() -> None:
    assert plan_fit(10 * MIB, 3600.0, 1080, 1920) is None  # an hour in 10 MB
    seconds = 10 * MIB * 8 * 0.95 / 1000 / (AUDIO_KBPS + MIN_VIDEO_KBPS)
    assert plan_fit(10 * MIB, seconds * 0.99, 1080, 1920) is not None
    assert plan_fit(10 * MIB, seconds * 1.01, 1080, 1920) is None


def test_the_argv_is_built_by_ffmpeg_python_never_a_shell(tmp_path: Path) -> None:
    plan = plan_fit(8 * MIB, 30.0, 1080, 1920)
    assert plan is not None
    argv = fit_argv(tmp_path / "in put.mp4", tmp_path / "out.mp4", plan, preset="veryfast")
    assert argv[0] == "ffmpeg" and argv[argv.index("-i") + 1] == str(tmp_path / "in put.mp4")
    assert argv[argv.index("-b:v") + 1] == f"{plan.video_kbps}k"
    assert argv[argv.index("-maxrate") + 1] == f"{plan.video_kbps}k"
    assert argv[argv.index("-b:a") + 1] == f"{AUDIO_KBPS}k"
    assert f"scale={plan.width}:{plan.height}" in argv[argv.index("-filter_complex") + 1]
    assert "+faststart" in argv and str(tmp_path / "out.mp4") in argv


def test_sizes_read_like_discords() -> None:
    assert format_size(10 * MIB) == "10 MB"
    assert format_size(25.5 * MIB) == "25.5 MB"
    assert format_size(120_000) == "117 KB"


async def test_a_noisy_video_is_re_encoded_under_the_limit(tmp_path: Path) -> None:
    source = tmp_path / "noisy.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc2=size=540x960:rate=15:duration=4", "-f", "lavfi",
         "-i", "sine=frequency=300:duration=4", "-vf", "noise=alls=40:allf=t",
         "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-c:a", "aac", str(source)],
        check=True, timeout=120,
    )  # fmt: skip
    limit = 200 * 1024
    assert source.stat().st_size > 3 * limit
    out = await fit_to_limit(source, tmp_path / "fit.mp4", limit, duration=4.0,
                             preset="veryfast", timeout=120)  # fmt: skip
    assert out is not None and out.stat().st_size <= limit
    probe = ffprobe(out)
    assert probe.duration == pytest.approx(4.0, abs=0.2)
    assert probe.stream("video")["codec_name"] == "h264"
    assert probe.stream("audio")["codec_name"] == "aac"
    assert (await fit_to_limit(source, tmp_path / "no.mp4", 2_000, duration=4.0,
                               preset="veryfast", timeout=120)) is None  # fmt: skip
    assert not (tmp_path / "no.mp4").exists()
