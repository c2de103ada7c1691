"""The `reelbot` command as a user runs it: a subprocess, real files, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SECRET_VARS
from tests.fakes.server import closed_base_url
from tests.fakes.together import FakeTogether

from .media import ffprobe

ROOT = Path(__file__).resolve().parents[1]
# Small, fast renders: few frames, a short pad, no second pass over the sound.
FAST = {
    "REELBOT_VIDEO__FPS": "10",
    "REELBOT_VIDEO__PAD_SECONDS": "0.1",
    "REELBOT_VIDEO__ASPECT": "1:1",
    "REELBOT_SOUND__NORMALIZE": "false",
}


def cli_env(data: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("REELBOT_") and k not in SECRET_VARS}  # fmt: skip
    clean.update({"REELBOT_STORAGE__DATA_DIR": str(data), "COLUMNS": "120", **env})
    return clean


def reelbot(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True, text=True, timeout=300, env=cli_env(data, **env), cwd=ROOT,
    )  # fmt: skip


async def reelbot_async(*args: str, data: Path, **env: str) -> tuple[int, str]:
    """`reelbot` from an async test (one whose fakes run in this process's event loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.cli", *args, env=cli_env(data, **env), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(300):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (out + err).decode("utf-8", "replace")


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


def test_doctor_does_not_pass_a_misspelt_table_or_a_stray_key(tmp_path: Path) -> None:
    for text, words in [('[vidoe]\naspect = "16:9"\n', "did you mean [video]?"),
                        ('aspect = "16:9"\n', "did you mean [video] aspect?")]:  # fmt: skip
        config = tmp_path / "c.toml"
        config.write_text(text)
        done = reelbot("doctor", "--config", str(config), data=tmp_path)
        assert done.returncode == 1
        assert f"✗ config: {config}" in done.stderr and words in done.stderr
        assert "✓ config" not in done.stderr


def test_the_example_config_renders_as_it_is(tmp_path: Path) -> None:
    """It has the bot's tables too: `reelbot render` knows them from the bot's entry point."""
    script = tmp_path / "s.md"
    script.write_text("## 1\nHi.\n")
    out = tmp_path / "s.mp4"
    done = reelbot("render", str(script), "--config", "config.toml.example", "-o", str(out),
                   data=tmp_path / "data", **FAST)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ffprobe(out).duration > 0.3


def test_verbose_logs_each_stage_with_its_duration(tmp_path: Path) -> None:
    script = tmp_path / "s.md"
    script.write_text("## 1\nHi.\n## 2\nBye.\n")
    for args in (["-v", "render"], ["render", "-v"]):  # before and after the sub-command
        data = tmp_path / f"data{len(args[0])}"
        done = reelbot(*args, str(script), "-o", str(tmp_path / "s.mp4"), data=data, **FAST)
        assert done.returncode == 0, done.stderr
        for scene in (1, 2):
            for stage in ("audio", "image", "clip"):
                assert f"INFO    pipeline.render: scene {scene}, {stage}: started" in done.stderr
                assert re.search(rf"scene {scene}, {stage}: done in \d+\.\d\d s", done.stderr)
        assert re.search(r"join: done in \d+\.\d\d s", done.stderr)
        assert " DEBUG " not in done.stderr
    again = reelbot("render", "-v", str(script), "-o", str(tmp_path / "s.mp4"), data=data, **FAST)
    assert "scene 2, clip: reused from the cache" in again.stderr


SECRET = "sk-test-0123456789abcdef"


async def test_a_key_with_a_trailing_newline_works_and_never_reaches_the_log(
    tmp_path: Path,
) -> None:
    """`-vv` logs each request's method, URL and status, never a header: the key (pasted with
    its newline) reaches the API stripped, and no line of the output shows it."""
    script = tmp_path / "s.md"
    script.write_text("## 1\nHi.\n")
    async with FakeTogether(expected_key=SECRET) as together:
        code, output = await reelbot_async(
            "render", "-vv", str(script), "-o", str(tmp_path / "s.mp4"), data=tmp_path / "d",
            TOGETHER_API_KEY=SECRET + "\n", REELBOT_IMAGES__BASE_URL=together.base_url, **FAST,
        )  # fmt: skip
        url = f"{together.base_url}/images/generations"
    assert code == 0, output
    assert [r.status for r in together.requests] == [200]
    assert re.search(rf"DEBUG   httpx: HTTP Request: POST {url} \S+ 200 OK", output), output
    assert " DEBUG " in output
    assert SECRET not in output and SECRET[:10] not in output
    assert "bearer" not in output.lower() and "authorization" not in output.lower()


async def test_a_key_with_a_control_character_inside_is_refused_by_name(tmp_path: Path) -> None:
    script = tmp_path / "s.md"
    script.write_text("## 1\nHi.\n")
    async with FakeTogether() as together:
        code, output = await reelbot_async(
            "-vv", "render", str(script), "-o", str(tmp_path / "s.mp4"), data=tmp_path / "d",
            TOGETHER_API_KEY="sk-test-01234\x0156789", REELBOT_IMAGES__BASE_URL=together.base_url,
        )  # fmt: skip
    assert code == 2
    assert together.requests == []
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) <= 2, output  # at -vv: asyncio's selector line, and the error
    assert "error: TOGETHER_API_KEY contains a control character" in output
    assert "sk-test" not in output and "56789" not in output


HOSTILE_TITLE = "Red\u001b[31m alert \u001b]0;PWNED\u0007 [/x] [bold]NUL\u0000here"


def test_a_hostile_title_at_a_terminal_is_shown_as_text(tmp_path: Path) -> None:
    """Rich markup in a title is escaped (it crashed the live table once); escape sequences
    from JSON escapes reach neither the terminal nor the MP4's title tag."""
    script = tmp_path / "s.json"
    # json.dumps writes each control character as a JSON escape (\\u001b), as a user might.
    script.write_text(json.dumps({"title": HOSTILE_TITLE, "scenes": [{"narration": "Hi."}]}))
    out = tmp_path / "s.mp4"
    done = reelbot("render", str(script), "-o", str(out), data=tmp_path / "d",
                   TTY_COMPATIBLE="1", **FAST)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "[/x] [bold]NUL here" in done.stderr  # the live table drew the title as text
    assert "PWNED" not in done.stderr and "\x1b]0;" not in done.stderr and "\x00" not in done.stderr
    assert "\x1b[31m alert" not in done.stderr
    assert ffprobe(out).tags["title"] == "Red alert [/x] [bold]NUL here"


def test_a_markup_title_from_markdown_renders(tmp_path: Path) -> None:
    script = tmp_path / "s.md"
    script.write_text("# [/x]\n## 1\nHi.\n")
    out = tmp_path / "s.mp4"
    done = reelbot("render", str(script), "-o", str(out), data=tmp_path / "d",
                   TTY_COMPATIBLE="1", **FAST)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert ffprobe(out).tags["title"] == "[/x]"


def test_a_nul_in_a_narration_keeps_the_rest_of_the_sentence(tmp_path: Path) -> None:
    """espeak-ng stopped reading at the NUL: the scene was as short as its first word."""
    durations = []
    for narration in ("Hello.", "Hello \u0000 there, and the rest of a long sentence."):
        script = tmp_path / "s.json"
        script.write_text(json.dumps({"scenes": [{"narration": narration}]}))
        out = tmp_path / "s.mp4"
        done = reelbot("render", str(script), "-o", str(out), data=tmp_path / "d", **FAST)
        assert done.returncode == 0, done.stderr
        durations.append(ffprobe(out).duration)
    assert durations[1] > durations[0] + 1.0, durations


# ------------------------------------------------------------ doctor --online


@pytest.mark.parametrize(
    ("case", "exit_code", "line"),
    [
        ("ok", 0, "✓ Together.ai: the key works and black-forest-labs/FLUX.1-schnell is offered "
         "as an image model"),
        ("refused key", 1, "✗ Together.ai: the API key was refused (HTTP 401); check "
         "TOGETHER_API_KEY"),
        ("unknown model", 1, "✗ Together.ai: the key works, but the model "
         "black-forest-labs/FLUX.1-schnell-Free is not offered; set [images] model to one of "
         "its image models (black-forest-labs/FLUX.1-schnell, black-forest-labs/FLUX.1.1-pro)"),
        ("chat model", 1, "✗ Together.ai: the model meta-llama/Llama-3.3-70B-Instruct-Turbo is "
         "offered as a chat model, not an image model"),
        ("host down", 1, "✗ Together.ai: {url} could not be reached (ConnectError)"),
    ],
)  # fmt: skip
async def test_doctor_online_asks_together_once(
    tmp_path: Path, case: str, exit_code: int, line: str
) -> None:
    models = {"unknown model": "black-forest-labs/FLUX.1-schnell-Free",
              "chat model": "meta-llama/Llama-3.3-70B-Instruct-Turbo"}  # fmt: skip
    async with FakeTogether(expected_key="right-key") as fake:
        url = closed_base_url() if case == "host down" else fake.base_url
        env = {
            "TOGETHER_API_KEY": "wrong-key" if case == "refused key" else "right-key",
            "REELBOT_IMAGES__BASE_URL": url,
            "REELBOT_IMAGES__MODEL": models.get(case, "black-forest-labs/FLUX.1-schnell"),
        }
        done = await asyncio.to_thread(reelbot, "doctor", "--online", data=tmp_path, **env)
    assert done.returncode == exit_code, done.stderr
    assert line.format(url=url) in done.stderr.replace("\n", " ").replace("  ", " ")
    assert "Traceback" not in done.stderr and "right-key" not in done.stderr
    assert len(fake.model_requests) == (0 if case == "host down" else 1)
    assert fake.requests == []  # no image was made (or paid for)


def test_doctor_online_without_a_key_has_nothing_to_ask(tmp_path: Path) -> None:
    done = reelbot("doctor", "--online", data=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Together.ai: not asked (images are offline cards" in done.stderr
