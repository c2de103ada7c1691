"""The `reelbot` command as a user runs it: a subprocess, real files, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .media import ffprobe

ROOT = Path(__file__).resolve().parents[1]


def reelbot(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REELBOT_")}
    clean.pop("TOGETHER_API_KEY", None)
    clean.update({"REELBOT_STORAGE__DATA_DIR": str(data), "COLUMNS": "120", **env})
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True, text=True, timeout=300, env=clean, cwd=ROOT,
    )  # fmt: skip


def test_render_the_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    done = reelbot("render", "examples/demo.md", "-o", str(out), "--aspect", "1:1",
                   data=tmp_path / "data")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 scenes" in done.stderr and "1080x1080" in done.stderr
    video = ffprobe(out).stream("video")
    assert (video["width"], video["height"]) == (1080, 1080)


def test_a_bad_script_names_the_line_and_exits_2(tmp_path: Path) -> None:
    script = tmp_path / "bad.md"
    script.write_text("# T\n## 1\nimage: only a picture\n")
    done = reelbot("render", str(script), "-o", str(tmp_path / "x.mp4"), data=tmp_path)
    assert done.returncode == 2
    assert "line 2 (scene 1): this scene has no narration" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_a_failed_scene_exits_1_naming_scene_and_stage(tmp_path: Path) -> None:
    script = tmp_path / "s.md"
    script.write_text("## 1\nvoice: xx-nope\nHello.\n")
    done = reelbot("render", str(script), "-o", str(tmp_path / "x.mp4"), data=tmp_path,
                   REELBOT_TTS__PROVIDER="espeak")  # fmt: skip
    assert done.returncode == 1
    assert "scene 1, audio: espeak-ng has no voice named 'xx-nope'" in done.stderr
    assert "Traceback" not in done.stderr
    # The default provider, Piper, names the voices it has.
    done = reelbot("render", str(script), "-o", str(tmp_path / "x.mp4"), data=tmp_path)
    assert done.returncode == 1
    assert "scene 1, audio: Piper has no voice named 'xx-nope'" in done.stderr
    assert "installed: en_US-joe-medium" in done.stderr and "Traceback" not in done.stderr


def test_doctor_reports_a_ready_machine(tmp_path: Path) -> None:
    done = reelbot("doctor", data=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("ffmpeg", "espeak-ng", "libx264", "caption font", "ready to render"):
        assert check in done.stderr


def test_doctor_fails_on_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[images]\nmax_concurrency = 0\n")
    done = reelbot("doctor", "--config", str(config), data=tmp_path)
    assert done.returncode == 1
    assert "images.max_concurrency" in done.stderr
