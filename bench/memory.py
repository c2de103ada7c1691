"""Peak memory and disk of a long render: RSS of this process and every process it starts
(ffmpeg, ffprobe), sampled on a thread of its own; disk used by the data directory (the
artifact cache) and the output."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.aspect import Aspect
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script

from .fakes import Latencies, bench_settings, fake_services
from .measure import TreeSampler, disk_use, rss_bytes
from .media import make_script


@dataclass(frozen=True)
class MemoryRun:
    aspect: str
    scenes: int
    makespan: float
    video_seconds: float
    baseline_rss: int  # this process before the render (Python, the fakes, the pictures)
    peak_rss: int  # the largest sum of RSS over the process tree
    peak_pss: int  # the largest sum of PSS (shared pages counted once) over the process tree
    peak_own_rss: int  # this process's part of that peak
    peak_processes: int
    peak_ffmpeg: int  # ffmpeg processes at once, of any kind
    peak_encoders: int  # of which encoding clips (H.264)
    disk: int  # data directory after the render
    peak_disk: int  # data directory, largest seen during the render
    output: int  # bytes of the finished video
    samples: int


async def memory_run(
    scenes: int, *, aspect: str, latencies: Latencies, chars: tuple[int, int], workdir: Path
) -> MemoryRun:
    frame = Aspect.parse(aspect)
    run_dir = workdir / f"memory-{scenes}"
    shutil.rmtree(run_dir, ignore_errors=True)
    data, out = run_dir / "data", run_dir / "out.mp4"
    async with fake_services(latencies, sizes=[frame.image]) as (together, speech):
        settings = bench_settings(together, speech, data)
        plan = plan_render(parse_script(make_script(scenes, chars=chars, seed=50)), settings,
                           aspect=frame)  # fmt: skip
        baseline = rss_bytes(os.getpid())
        with TreeSampler(directory=data) as sampler:
            result = await render_plan(plan, settings, out)
    peak = sampler.peak
    run = MemoryRun(
        aspect=aspect,
        scenes=scenes,
        makespan=result.events[-1].t,
        video_seconds=result.duration,
        baseline_rss=baseline,
        peak_rss=peak.rss,
        peak_pss=peak.pss,
        peak_own_rss=peak.own_rss,
        peak_processes=peak.processes,
        peak_ffmpeg=peak.ffmpeg,
        peak_encoders=peak.encoders,
        disk=disk_use(data),
        peak_disk=max(peak.disk, disk_use(data)),
        output=out.stat().st_size,
        samples=peak.samples,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return run
