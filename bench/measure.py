"""Measuring: wall and CPU time of child processes, the RSS of a process tree, disk use, and
the machine the figures come from."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ the machine


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    ffmpeg: str
    python: str
    load: tuple[float, float, float]  # load average when the run started

    def describe(self) -> str:
        one, five, _ = self.load
        return (
            f"{self.cores} cores ({self.cpu}), {self.ffmpeg}, Python {self.python}; "
            f"load average {one:.2f} / {five:.2f} (1 / 5 min) at the start"
        )


def machine() -> Machine:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        banner = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True,
                                check=True, timeout=30).stdout.split("\n", 1)[0]  # fmt: skip
        version = " ".join(banner.split()[:3])  # "ffmpeg version 5.1.x-..."
        ffmpeg = version.replace("ffmpeg version", "ffmpeg").split("-", 1)[0]
    except (OSError, subprocess.SubprocessError):
        ffmpeg = "ffmpeg (unknown version)"
    return Machine(
        cores=os.cpu_count() or 1,
        cpu=cpu,
        ffmpeg=ffmpeg,
        python=platform.python_version(),
        load=os.getloadavg(),
    )


# ------------------------------------------------------------------ time


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child (and the threads and children it waited for)


def run_timed(argv: Sequence[str], *, timeout: float = 900) -> Timing:
    """Run `argv` to completion (it must succeed); its wall time and CPU time.

    The CPU time is the difference of RUSAGE_CHILDREN around the run, so nothing else may
    reap a child of this process meanwhile (the benchmarks run these one at a time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=timeout, check=False)  # fmt: skip
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{argv[0]} failed (exit {done.returncode}): {tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of nothing")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


# ------------------------------------------------------------------ memory


def _processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command name), read from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode("utf-8", "replace")
        except OSError:  # it ended while we looked
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name)
    return table


def process_tree(root: int) -> dict[int, str]:
    """`root` and all its descendants: pid → command name."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    tree: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in tree:
            tree[pid] = table[pid][1]
            todo.extend(children.get(pid, ()))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 if it has gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process: its private pages plus its share of the pages
    it shares (libraries), so the PSS of processes adds up to the memory they use together.
    0 if it has gone (or the kernel has no smaps_rollup)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _encodes_h264(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"libx264" in handle.read()
    except OSError:
        return False


def disk_use(path: Path) -> int:
    """Bytes of disk used by the files under `path` (allocated blocks, like `du`)."""
    total = 0
    if not path.exists():
        return 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


@dataclass
class TreePeak:
    rss: int = 0  # the largest sum of RSS over the tree seen in one sample
    own_rss: int = 0  # this process's part of that sample
    pss: int = 0  # the largest sum of PSS over the tree seen in one sample
    processes: int = 0  # the most processes in the tree at once (this one included)
    ffmpeg: int = 0  # the most ffmpeg processes at once, of any kind
    encoders: int = 0  # the most ffmpeg processes encoding H.264 (clips) at once
    disk: int = 0  # the most disk used under the watched directory
    samples: int = 0


class TreeSampler:
    """Samples the RSS and PSS of this process and all its descendants (and the disk use of a
    directory) on a thread of its own, so a busy event loop cannot skew the samples.

    The sum of RSS counts pages shared between processes (libraries) once per process: an
    upper bound of the memory the tree needs. The sum of PSS counts them once in all."""

    def __init__(self, *, interval: float = 0.05, directory: Path | None = None) -> None:
        self.interval = interval
        self.directory = directory
        self.peak = TreePeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def sample(self) -> None:
        me = os.getpid()
        tree = process_tree(me)
        sizes = {pid: rss_bytes(pid) for pid in tree}
        total = sum(sizes.values())
        peak = self.peak
        if total > peak.rss:
            peak.rss, peak.own_rss = total, sizes.get(me, 0)
        peak.pss = max(peak.pss, sum(pss_bytes(pid) for pid in tree))
        peak.processes = max(peak.processes, len(tree))
        ffmpeg = [pid for pid, name in tree.items() if name == "ffmpeg"]
        peak.ffmpeg = max(peak.ffmpeg, len(ffmpeg))
        peak.encoders = max(peak.encoders, sum(1 for pid in ffmpeg if _encodes_h264(pid)))
        peak.samples += 1
        if self.directory is not None and peak.samples % 10 == 1:
            peak.disk = max(peak.disk, disk_use(self.directory))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
