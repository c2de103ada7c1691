"""Render makespan against its critical path, and against the sequential (old) model.

A render of N scenes cannot finish before its images have come back to back through the one
image slot (N x the image latency), or before the last narration is spoken if that is later,
plus the encode of the clip that had to wait for them and the join. That sum is the
lower bound; efficiency = lower bound / makespan. The clip encode and the join are measured
in the same run (from the render's own progress events), so a slow machine moves the bound
and the makespan together.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.aspect import Aspect
from pipeline.events import JobDone, ProgressEvent, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script

from .fakes import Latencies, bench_settings, fake_services
from .media import make_script


@dataclass(frozen=True)
class RenderRun:
    aspect: str
    scenes: int
    sequential: bool
    makespan: float  # seconds from the start of the render to JobDone
    images: float  # N x image latency: the image slot busy back to back
    tts_finish: float  # when the last narration was done (all start at once when pipelined)
    last_scene: int  # the scene whose image came last
    last_clip: float  # encode of that scene's clip, measured in this run
    join: float  # the join (and adding the soundtrack, or the sound pass), measured in this run
    video_seconds: float
    clips: dict[int, float] = field(default_factory=dict)  # every scene's clip encode
    events: tuple[ProgressEvent, ...] = field(default=(), repr=False)

    @property
    def lower_bound(self) -> float:
        return max(self.images, self.tts_finish) + self.last_clip + self.join

    @property
    def efficiency(self) -> float:
        return self.lower_bound / self.makespan


@dataclass(frozen=True)
class RenderPair:
    """The same script rendered pipelined and sequentially, one after the other."""

    pipelined: RenderRun
    sequential: RenderRun

    @property
    def speedup(self) -> float:
        return self.sequential.makespan / self.pipelined.makespan

    @property
    def strict_bound(self) -> float:
        """The bound with the last clip's encode and the join each at the faster of their two
        measurements (the sequential run encodes that same clip alone, and makes the same
        join): a pipelined encode slowed by the encodes still running beside it does not
        stretch this bound."""
        run, alone = self.pipelined, self.sequential
        clip = min(run.last_clip, alone.clips.get(run.last_scene, run.last_clip))
        return max(run.images, run.tts_finish) + clip + min(run.join, alone.join)

    @property
    def strict_efficiency(self) -> float:
        return self.strict_bound / self.pipelined.makespan


def _span(events: Sequence[ProgressEvent], scene: int, stage: Stage) -> float:
    started = [e.t for e in events if isinstance(e, SceneEvent) and e.scene == scene
               and e.stage is stage and e.status is Status.STARTED]  # fmt: skip
    done = [e.t for e in events if isinstance(e, SceneEvent) and e.scene == scene
            and e.stage is stage and e.status is Status.DONE]  # fmt: skip
    if not started or not done:
        raise ValueError(f"no {stage} of scene {scene} in the events (cached or failed?)")
    return max(done) - min(started)


def summarize(
    events: Sequence[ProgressEvent],
    *,
    aspect: str,
    scenes: int,
    image_latency: float,
    sequential: bool,
) -> RenderRun:
    """The figures of one render, from its progress events."""
    finished = [e for e in events if isinstance(e, JobDone)]
    if not finished:
        raise ValueError("the render did not finish")

    def done_at(stage: Stage) -> dict[int, float]:
        return {e.scene: e.t for e in events if isinstance(e, SceneEvent)
                and e.stage is stage and e.status is Status.DONE}  # fmt: skip

    images, audio = done_at(Stage.IMAGE), done_at(Stage.AUDIO)
    if len(images) != scenes or len(audio) != scenes:
        raise ValueError(f"expected {scenes} images and narrations to be made, "
                         f"got {len(images)} and {len(audio)}")  # fmt: skip
    last = max(images, key=lambda scene: images[scene])  # the scene whose image came last
    clips = {scene: _span(events, scene, Stage.CLIP) for scene in images}
    return RenderRun(
        aspect=aspect,
        scenes=scenes,
        sequential=sequential,
        makespan=finished[-1].t,
        images=scenes * image_latency,
        tts_finish=max(audio.values()),
        last_scene=last,
        last_clip=clips[last],
        join=_span(events, 0, Stage.JOIN),
        video_seconds=finished[-1].duration,
        clips=clips,
        events=tuple(events),
    )


async def render_once(
    aspect: str,
    scenes: int,
    *,
    sequential: bool,
    latencies: Latencies,
    chars: tuple[int, int],
    workdir: Path,
) -> RenderRun:
    """One render of a generated script against fresh fakes and an empty cache."""
    frame = Aspect.parse(aspect)
    run_dir = workdir / f"{aspect.replace(':', 'x')}-{scenes}-{'seq' if sequential else 'pipe'}"
    shutil.rmtree(run_dir, ignore_errors=True)
    async with fake_services(latencies, sizes=[frame.image]) as (together, speech):
        settings = bench_settings(together, speech, run_dir / "data")
        plan = plan_render(parse_script(make_script(scenes, chars=chars)), settings,
                           aspect=frame)  # fmt: skip
        result = await render_plan(plan, settings, run_dir / "out.mp4", sequential=sequential)
    if together.overlaps or together.max_in_flight > 1:
        raise RuntimeError("image requests overlapped: the image slot was not respected")
    shutil.rmtree(run_dir, ignore_errors=True)
    return summarize(result.events, aspect=aspect, scenes=scenes,
                     image_latency=latencies.image, sequential=sequential)  # fmt: skip


async def render_pair(
    aspect: str, scenes: int, *, latencies: Latencies, chars: tuple[int, int], workdir: Path
) -> RenderPair:
    runs = [
        await render_once(aspect, scenes, sequential=sequential, latencies=latencies,
                          chars=chars, workdir=workdir)
        for sequential in (False, True)
    ]  # fmt: skip
    return RenderPair(*runs)
