"""A real redis-server and real `reelbot worker` processes, for `[queue] backend = "arq"`.

    redis-server (127.0.0.1, a free port, appendonly, its files in the test's tmp_path)
    reelbot worker --config <tmp>   × n, each in its own process group (kill -9 takes its
                                      ffmpeg children too)

Each process's output goes to a file, printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REELBOT = [sys.executable, "-m", "pipeline.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """redis-server as the docs tell an operator to run it: append-only persistence on."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.log = folder / "redis.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, timeout: float = 20) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed (make deps installs it)"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--logfile", str(self.log), "--protected-mode", "yes",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        while not await self.ping():
            if self.process.returncode is not None or loop.time() > give_up:
                raise RuntimeError(f"redis-server did not start:\n{self.log_text()}")
            await asyncio.sleep(0.05)

    async def ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.asynccontextmanager
async def running_redis(folder: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(folder)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


class WorkerProcess:
    def __init__(self, config: Path, env: Mapping[str, str], log: Path) -> None:
        self.config = config
        self.env = dict(env)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *REELBOT, "worker", "--config", str(self.config),
                env=self.env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip

    async def wait(self, timeout: float) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    async def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL to the whole group if it lingers."""
        if self.process is None:
            return None
        if not self.exited:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await self.wait(timeout)
        self._kill_group()
        await self.process.wait()
        return self.process.returncode

    async def kill9(self) -> None:
        """`kill -9` of the worker and its ffmpeg children, at once (the host dies)."""
        self._kill_group()
        assert self.process is not None
        await self.process.wait()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
