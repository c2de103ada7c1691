"""The programs a render starts run below this process (whose event loop hands the image slot
on), and a later render's lower still than the earliest render's, so two renders side by side
never slow the earlier one's clips, join and sound pass much (pipeline/job_order.py,
pipeline/proc.py). Real processes report their own niceness."""

from __future__ import annotations

import asyncio
import os
import sys

from pipeline.job_order import LATER_JOB_NICENESS, PROGRAM_NICENESS, in_job_order, niceness
from pipeline.proc import lower_priority, run_program

# Prints the niceness of the program's main thread and of a thread it starts.
REPORT = """
import os, threading
seen = []
t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
t.start(); t.join()
print(os.getpriority(os.PRIO_PROCESS, 0), seen[0])
"""


async def levels() -> tuple[int, int]:
    out = await run_program([sys.executable, "-I", "-c", REPORT], what="report", timeout=30)
    main, thread = out.split()
    return int(main), int(thread)


def ours() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


async def test_a_later_renders_programs_run_below_the_earliest_renders() -> None:
    base = min(19, ours() + PROGRAM_NICENESS)
    lowered = min(19, ours() + PROGRAM_NICENESS + LATER_JOB_NICENESS)
    assert base > ours() or ours() == 19
    assert await levels() == (base, base)  # outside any render
    with in_job_order(7):
        assert niceness() == PROGRAM_NICENESS
        assert await levels() == (base, base)  # the only render under way
        with in_job_order(9):
            assert niceness() == PROGRAM_NICENESS + LATER_JOB_NICENESS
            assert await levels() == (lowered, lowered)  # main thread and its threads
            with in_job_order(7):
                assert await levels() == (base, base)  # the earlier job's own work
        with in_job_order(5):  # an earlier job than 7 starts meanwhile
            inner = asyncio.create_task(levels())  # a task inherits its render's place
            assert await inner == (base, base)
        with in_job_order(5):
            pass
    with in_job_order(9):  # 7 has finished: 9 is now the earliest
        assert niceness() == PROGRAM_NICENESS
        assert await levels() == (base, base)


async def test_renders_running_side_by_side_are_counted_while_they_run() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def earlier() -> None:
        with in_job_order(1):
            started.set()
            await release.wait()

    task = asyncio.create_task(earlier())
    await started.wait()
    with in_job_order(2):
        assert niceness() == PROGRAM_NICENESS + LATER_JOB_NICENESS
        release.set()
        await task
        assert niceness() == PROGRAM_NICENESS  # the earlier render ended while this one ran


async def test_lowering_a_running_process_reaches_the_threads_it_already_has() -> None:
    program = (
        "import os, sys, threading\n"
        "go = threading.Event(); seen = []\n"
        "def work():\n"
        "    go.wait(); seen.append(os.getpriority(os.PRIO_PROCESS, 0))\n"
        "t = threading.Thread(target=work); t.start()\n"
        "print('ready', flush=True); sys.stdin.readline(); go.set(); t.join()\n"
        "print(os.getpriority(os.PRIO_PROCESS, 0), seen[0], flush=True)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", program,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    lower_priority(process.pid, 3)
    out, _ = await asyncio.wait_for(process.communicate(b"go\n"), 30)
    level = min(19, ours() + 3)
    assert out.split() == [str(level).encode(), str(level).encode()]
