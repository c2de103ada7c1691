"""Failures say what went wrong, in one line, with the right exit status: a full disk, a
read-only place, a folder given for the video, a music file that is not music.

Exit status: 2 when the input cannot be used (checked before any work), 1 when the render
itself failed (the input was fine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import TTSError
from pipeline.tts.espeak import EspeakTTS

from .disks import read_only_folder, small_disk
from .test_cli import FAST, reelbot


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def nothing_rendered(data: Path) -> bool:
    """No artifact was made: the check came before the work."""
    return not [p for p in (data / "cache").rglob("*") if p.is_file()]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "s.md"
    path.write_text("## 1\nHello there.\n## 2\nAnd a second scene, to have more to write.\n")
    return path


def test_a_folder_as_the_output_is_refused_before_rendering(tmp_path: Path, script: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    data = tmp_path / "data"
    done = reelbot("render", str(script), "-o", str(folder), data=data, **FAST)
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"error: the video {folder} is a folder; name a file, e.g. {folder}/video.mp4"
    )
    assert nothing_rendered(data)


def test_an_output_under_a_file_is_refused_before_rendering(tmp_path: Path, script: Path) -> None:
    data = tmp_path / "data"
    done = reelbot("render", str(script), "-o", str(script / "x.mp4"), data=data, **FAST)
    assert done.returncode == 2
    assert f"{script} is a file, not a folder" in one_line(done.stderr)
    assert nothing_rendered(data)


def test_an_output_in_a_read_only_place_is_refused_before_rendering(
    tmp_path: Path, script: Path
) -> None:
    data = tmp_path / "data"
    with read_only_folder(tmp_path / "ro") as folder:
        done = reelbot("render", str(script), "-o", str(folder / "x.mp4"), data=data, **FAST)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"error: cannot write the video {folder}/x.mp4: ")
    assert line.endswith(("Read-only file system", "Permission denied"))
    assert nothing_rendered(data)


def test_a_read_only_data_folder_is_one_plain_line(tmp_path: Path, script: Path) -> None:
    with read_only_folder(tmp_path / "ro") as folder:
        data = folder / "data"
        done = reelbot("render", str(script), "-o", str(tmp_path / "x.mp4"), data=data, **FAST)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"error: the data folder {data} ([storage] data_dir) cannot be written")
    assert not (tmp_path / "x.mp4").exists()


def test_a_full_disk_at_the_join_exits_1_and_says_so(tmp_path: Path, script: Path) -> None:
    """The scenes are made (in a data folder with room); the video's disk is full."""
    with small_disk(tmp_path / "small", kilobytes=24) as disk:
        done = reelbot("render", str(script), "-o", str(disk / "x.mp4"), data=tmp_path / "data",
                       **FAST)  # fmt: skip
        left = sorted(p.name for p in disk.iterdir())
    assert done.returncode == 1  # not 2: the input was fine
    line = one_line(done.stderr)
    assert line.startswith("render failed: ") and line.endswith("No space left on device")
    assert left == []  # no half-written video, no temporary file


def test_a_full_data_disk_says_so_without_a_traceback_or_a_path(
    tmp_path: Path, script: Path
) -> None:
    with small_disk(tmp_path / "small", kilobytes=16) as disk:
        done = reelbot("render", str(script), "-o", str(tmp_path / "x.mp4"), data=disk,
                       **FAST)  # fmt: skip
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("render failed: scene ") and line.endswith("No space left on device")
    assert "/" not in line.split(": ", 1)[1]  # no machine path in the reason


async def test_the_espeak_helper_on_a_full_disk_says_so_in_one_line() -> None:
    """The word-timing helper writes the WAV; on a full disk (/dev/full) its error is one plain
    line, not its Python traceback with the machine's paths."""
    with pytest.raises(TTSError) as caught:
        await EspeakTTS().synthesize("Hello there.", voice="en-us", speed=1.0,
                                     out=Path("/dev/full"))  # fmt: skip
    message = str(caught.value)
    assert message == "espeak-ng: cannot write the speech: No space left on device"


@pytest.mark.parametrize("name", ["notes.md", "notes.mp3"])
def test_music_that_is_not_audio_is_named_before_rendering(
    tmp_path: Path, script: Path, name: str
) -> None:
    music = tmp_path / name
    music.write_text("# My notes\nnot music at all\n")
    data = tmp_path / "data"
    done = reelbot("render", str(script), "-o", str(tmp_path / "x.mp4"), "--music", str(music),
                   data=data, **FAST)  # fmt: skip
    assert done.returncode == 2
    assert name in one_line(done.stderr)
    assert nothing_rendered(data)


def test_exit_status_2_is_for_input_and_1_for_a_failed_render(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("## 1\nseed: ²\nHello.\n")
    done = reelbot("render", str(bad), "-o", str(tmp_path / "x.mp4"), data=tmp_path / "d")
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "error: line 2 (scene 1): seed must be a whole number from 0 to 2147483647"
    )
    missing = reelbot("render", str(tmp_path / "nope.md"), data=tmp_path / "d")
    assert missing.returncode == 2
    assert "cannot read the script" in one_line(missing.stderr)
