"""Running external programs: argv lists only, a timeout, and no orphans on cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Literal

from .errors import MediaError

__all__ = ["run_program"]


async def run_program(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float,
    stdin: bytes | None = None,
    output: Literal["stdout", "stderr"] = "stdout",
) -> bytes:
    """Run `argv`, return its stdout (or its stderr, where ffmpeg writes measurements such as
    loudnorm's). Raises MediaError naming `what` on failure or timeout.

    If the awaiting task is cancelled, the process is killed and reaped before the
    cancellation propagates.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise MediaError(f"{argv[0]} is not installed (run `reelbot doctor`)") from None
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate(stdin)
    except BaseException as exc:
        await _kill(process)
        if isinstance(exc, TimeoutError):
            raise MediaError(f"{what} took longer than {timeout:.0f} s and was stopped") from None
        raise
    if process.returncode != 0:
        tail = stderr.decode("utf-8", "replace").strip()[-2000:]
        raise MediaError(f"{what} failed (exit code {process.returncode})", detail=tail)
    return stdout if output == "stdout" else stderr


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    # Reap it even if we are being cancelled again, so no zombie or orphan is left.
    await asyncio.shield(process.wait())
