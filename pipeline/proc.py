"""Running external programs: argv lists only, a timeout, and no orphans on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Mapping, Sequence
from typing import Literal

from .errors import MediaError
from .job_order import niceness

__all__ = ["known_reason", "lower_priority", "run_program"]

# Reasons a program's stderr may give that a user can act on, in the system's own words: they
# are put in the message (its stderr, with machine paths, goes to the log only).
_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG, errno.EIO)
_WRITE_FAILURES = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG))
_REASONS = (
    *(os.strerror(code) for code in _OS_ERRORS),
    "Invalid data found when processing input",
)


async def run_program(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float,
    stdin: bytes | None = None,
    output: Literal["stdout", "stderr"] = "stdout",
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run `argv`, return its stdout (or its stderr, where ffmpeg writes measurements such as
    loudnorm's). Raises MediaError naming `what` on failure or timeout.

    If the awaiting task is cancelled, the process is killed and reaped before the
    cancellation propagates. `env`: variables set for the program, beside the inherited ones.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        raise MediaError(f"{argv[0]} is not installed (run `reelbot doctor`)") from None
    lower_priority(process.pid, niceness())
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate(stdin)
    except BaseException as exc:
        await _kill(process)
        if isinstance(exc, TimeoutError):
            raise MediaError(f"{what} took longer than {timeout:.0f} s and was stopped") from None
        raise
    tail = stderr.decode("utf-8", "replace").strip()[-2000:]
    if process.returncode != 0:
        reason = known_reason(tail)
        message = f"{what} failed (exit code {process.returncode})"
        raise MediaError(f"{message}: {reason}" if reason else message, detail=tail,
                         returncode=process.returncode)  # fmt: skip
    # ffmpeg 5.1 exits 0 when writing the trailer fails ("Error writing trailer of ...: No
    # space left on device"): its output is then cut short. A write error is a failure.
    lost = next((r for r in _WRITE_FAILURES if r in tail), None)
    if lost is not None:
        raise MediaError(f"{what} failed: {lost}", detail=tail, returncode=0)
    return stdout if output == "stdout" else stderr


def lower_priority(pid: int, steps: int) -> None:
    """Run process `pid` `steps` nice levels below this process (at most 19). On Linux the
    level is each thread's, and a new thread takes its creator's: the main thread first, then
    any thread it has already started. A process that is gone is let be."""
    level = min(19, os.getpriority(os.PRIO_PROCESS, 0) + steps)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, level)
        for thread in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(thread), level)


def known_reason(log: str) -> str | None:
    """The last reason in `log` that a user can act on ("No space left on device"), if any."""
    found = [(log.rfind(reason), reason) for reason in _REASONS if reason in log]
    return max(found)[1] if found else None


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    # Reap it even if we are being cancelled again, so no zombie or orphan is left.
    await asyncio.shield(process.wait())
