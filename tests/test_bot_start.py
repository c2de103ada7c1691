"""The bot fails to start in one plain line, with the right exit status, and never hangs; a
job that fails leaves one WARNING in the bot's log naming the job, scene, stage and reason."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import BotSettings
from bot.errors import StoreUnreadable
from bot.store import JobState, Store
from tests.botproc import bot_env
from tests.fakes.discord import FakeDiscord
from tests.fakes.together import FakeTogether

from .test_cli import cli_env
from .test_jobs import Harness, request

ROOT = Path(__file__).resolve().parents[1]
GARBAGE = b"SQLite format 3\x00" + bytes(range(256)) * 16  # a header, then nothing valid


def run_bot(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout is the "never hangs" check: a store left open kept the process alive.
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: nothing else can take it
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "content", [GARBAGE, b"not a database at all\n" * 100], ids=["header", "text"]
)
async def test_a_corrupt_store_is_named_and_the_connection_closed(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "bot.sqlite3"
    path.write_bytes(content)
    threads = threading.active_count()
    with pytest.raises(StoreUnreadable) as caught:
        await Store.open(path)
    assert str(caught.value).startswith(f"the bot's store {path} is unreadable (")
    # aiosqlite's thread (not a daemon: it kept the bot alive) ends once the connection closes.
    async with asyncio.timeout(10):
        while threading.active_count() > threads:
            await asyncio.sleep(0.01)


def test_the_bot_with_a_corrupt_store_exits_2_in_one_line(tmp_path: Path, closed_port: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bot.sqlite3").write_bytes(GARBAGE)
    config = tmp_path / "c.toml"
    config.write_text(f'[discord]\napi_base = "http://127.0.0.1:{closed_port}/api/v10"\n')
    done = run_bot(config, cli_env(data, DISCORD_TOKEN="abc.def.ghi"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: the bot's store {data / 'bot.sqlite3'} is unreadable (file is not a database); "
        "move it aside to start with an empty one, or restore it from a backup"
    ]


def test_an_unreachable_discord_is_one_line(tmp_path: Path, closed_port: int) -> None:
    config = tmp_path / "c.toml"
    api = f"http://127.0.0.1:{closed_port}/api/v10"
    config.write_text(f'[discord]\napi_base = "{api}"\n')
    done = run_bot(config, cli_env(tmp_path / "data", DISCORD_TOKEN="abc.def.ghi"))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: Discord cannot be reached at {api} (127.0.0.1:")
    assert lines[0].endswith("check the network, or [discord] api_base")
    assert "abc.def.ghi" not in done.stderr


async def test_a_refused_token_still_exits_2(tmp_path: Path) -> None:
    """The fake Discord refuses any other token with 401: the start-up refusal is unchanged."""
    config = tmp_path / "c.toml"
    config.write_text("[discord]\nedit_interval = 1.0\n")
    async with FakeDiscord(guilds=[]) as fake:
        env = bot_env(fake, together_url="http://127.0.0.1:9", speech_url="http://127.0.0.1:9",
                      data_dir=tmp_path / "data")  # fmt: skip
        env["DISCORD_TOKEN"] = "not-the-fake-token"
        process = await _start(config, env)
        out, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().splitlines() == [
        "error: Discord refused the token in DISCORD_TOKEN (was it reset?)"
    ]
    assert out == b""


async def _start(config: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--config", str(config), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_failed_job_logs_one_warning_naming_job_scene_stage_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "a-key-the-fake-refuses")
    async with FakeTogether(expected_key="the-right-key") as together:
        settings = BotSettings(
            storage={"data_dir": str(tmp_path / "data")},
            images={"provider": "together", "base_url": together.base_url},
            video={"fps": 10, "aspect": "1:1"},
        )
        harness = Harness(settings, tmp_path / "bot.sqlite3")
        with caplog.at_level(logging.INFO):
            async with harness as runner:
                await runner.start()
                job = await runner.submit(request())
                failed = await harness.wait_state(job.id, JobState.FAILED)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["bot.jobs"]
    assert failed.error is not None and failed.error.startswith("scene 1, image: ")
    reason = failed.error.removeprefix("scene 1, image: ")
    assert "rejected the API key" in reason
    assert warnings[0].getMessage() == f"job {job.id} failed: scene 1, stage image: {reason}"
    # INFO names the job on each stage line too (several jobs' lines interleave).
    assert any(r.getMessage() == f"job {job.id}: scene 1, image: started" for r in caplog.records)
