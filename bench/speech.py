"""Speech: how fast espeak-ng and Piper speak on this machine, the memory of Piper's helper
process, and whether Piper's narrations are all done before a render's last image.

Throughput = seconds of speech made / wall seconds, with every scene asked for at once (as a
render asks): espeak-ng runs one process per scene, Piper one helper process per voice that
speaks the scenes one after another. Piper's first request also loads the voice; that load is
timed on its own and left out of the rate.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Secrets, Settings, TTSConfig
from pipeline.events import SceneEvent, Stage, Status
from pipeline.media import probe_duration
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.tts import EspeakTTS, PiperTTS
from pipeline.tts.base import TTSProvider

from .fakes import BENCH_KEY, Latencies, fake_services
from .measure import rss_bytes
from .media import make_script

__all__ = ["RenderRace", "SpeechRate", "piper_race", "speech_rates"]


@dataclass(frozen=True)
class SpeechRate:
    provider: str
    scenes: int
    audio: float  # seconds of speech made
    wall: float  # seconds it took (all scenes asked at once)
    load: float  # Piper: loading the voice (first request), not in `wall`
    peak_rss: int  # Piper: the helper process's peak resident memory (0 for espeak-ng)
    cpu: float = 0.0  # CPU seconds the speaking processes used (user + system)

    @property
    def rate(self) -> float:
        return self.audio / self.wall

    @property
    def cpu_rate(self) -> float:
        """Seconds of speech per CPU second: what a busy machine does not change much."""
        return self.audio / self.cpu if self.cpu else 0.0


@dataclass(frozen=True)
class RenderRace:
    scenes: int
    image_latency: float
    last_narration: float  # when the last narration was done (s from the render's start)
    last_image_started: float
    last_image: float  # when the last image came back
    makespan: float

    @property
    def ahead(self) -> bool:
        return self.last_narration < self.last_image


def _narrations(scenes: int, chars: tuple[int, int]) -> list[str]:
    return [s.narration for s in parse_script(make_script(scenes, chars=chars)).scenes]


async def _speak_all(tts: TTSProvider, voice: str, texts: list[str], folder: Path) -> float:
    """Every text at once; the seconds of audio made."""
    outs = [folder / f"{i}.wav" for i in range(len(texts))]
    await asyncio.gather(*(tts.synthesize(t, voice=voice, speed=1.0, out=o)
                           for t, o in zip(texts, outs, strict=True)))  # fmt: skip
    return sum([await probe_duration(o) for o in outs])


async def speech_rates(scenes: int, chars: tuple[int, int], workdir: Path) -> list[SpeechRate]:
    texts = _narrations(scenes, chars)
    rates = []
    folder = workdir / "speech"
    folder.mkdir(parents=True, exist_ok=True)

    espeak = EspeakTTS()
    await espeak.check_voice("en-us")  # the voice look-up, once, as in a render
    cpu = _children_cpu()
    started = time.monotonic()
    audio = await _speak_all(espeak, "en-us", texts, folder)
    wall = time.monotonic() - started
    # The helper processes have all been waited for: their CPU is in RUSAGE_CHILDREN (with
    # the ffprobe runs that measured the audio, a small overcount).
    rates.append(SpeechRate("espeak-ng", scenes, audio, wall, 0.0, 0, _children_cpu() - cpu))

    piper = PiperTTS(TTSConfig(provider="piper"))
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max([peak, *(rss_bytes(pid) for pid in piper.worker_pids())])
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        started = time.monotonic()
        await piper.synthesize("Ready.", voice="en-us", speed=1.0, out=folder / "load.wav")
        load = time.monotonic() - started
        (pid,) = piper.worker_pids()
        cpu = _process_cpu(pid)
        started = time.monotonic()
        audio = await _speak_all(piper, "en-us", texts, folder)
        wall = time.monotonic() - started
        cpu = _process_cpu(pid) - cpu
    finally:
        sampling = False
        await sampler
        await piper.aclose()
    rates.append(SpeechRate("Piper (joe, medium)", scenes, audio, wall, load, peak, cpu))
    return rates


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def piper_race(
    scenes: int, *, image_latency: float, chars: tuple[int, int], workdir: Path
) -> RenderRace:
    """A render with Piper's narration and images that take `image_latency` each (the fake
    Together, one at a time): is every narration done before the last image?"""
    frame = (576, 1024)
    latencies = Latencies(image_latency, 0.0, 0.0)
    async with fake_services(latencies, sizes=[frame]) as (together, _speech):
        settings = Settings(
            images={"provider": "together", "base_url": together.base_url},
            tts={"provider": "piper"},
            storage={"data_dir": str(workdir / "piper-race")},
            secrets=Secrets.model_validate({"TOGETHER_API_KEY": BENCH_KEY}),
        )  # fmt: skip
        plan = plan_render(parse_script(make_script(scenes, chars=chars)), settings)
        result = await render_plan(plan, settings, workdir / "piper-race.mp4")

    def when(stage: Stage, status: Status) -> list[float]:
        return [e.t for e in result.events if isinstance(e, SceneEvent)
                and e.stage is stage and e.status is status]  # fmt: skip

    return RenderRace(
        scenes=scenes,
        image_latency=image_latency,
        last_narration=max(when(Stage.AUDIO, Status.DONE)),
        last_image_started=max(when(Stage.IMAGE, Status.STARTED)),
        last_image=max(when(Stage.IMAGE, Status.DONE)),
        makespan=result.events[-1].t,
    )
