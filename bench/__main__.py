"""`python -m bench` (`make bench`): render makespan against its critical path, clip encoding
against MoviePy and the encoder alone (with SSIM and size), a one-scene edit from the CLI and
from Discord, and the memory and disk of a long render. Prints the tables and writes them to
bench/results.md. `--quick` for a short run; `--help` for the knobs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from pipeline.aspect import Aspect
from pipeline.config import VideoConfig

from .edit import edit_runs
from .encode import encode_bench
from .fakes import Latencies
from .measure import machine
from .memory import memory_run
from .queue import keys_run, queue_run
from .render import RenderPair, render_pair
from .report import (
    Section,
    edit_section,
    encode_section,
    memory_section,
    queue_section,
    render_section,
    speech_section,
    write_results,
)
from .speech import piper_race, speech_rates

BENCHMARKS = ("render", "queue", "encode", "edit", "memory", "speech")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")  # fmt: skip
RESULTS = Path(__file__).with_name("results.md")


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    aspects: tuple[str, ...]  # of the renders (and the memory run: the first)
    latencies: Latencies
    chars: tuple[int, int]  # narration length per scene (characters)
    clip_seconds: float
    encode_aspects: tuple[str, ...]
    encode_presets: tuple[str, ...]  # x264 presets timed besides the shipped one
    rounds: int
    memory_scenes: int
    memory_chars: tuple[int, int]
    memory_latencies: Latencies
    speech_scenes: int = 12
    speech_chars: tuple[int, int] = (80, 160)
    race_image: float = 3.0  # seconds per image in the Piper render
    queue_jobs: int = 3  # jobs queued at once in the queue benchmark ...
    queue_scenes: int = 12  # ... of this many scenes each


FULL = Plan(sizes=(2, 6, 12), aspects=("9:16", "16:9"), latencies=Latencies(3.0, 0.2, 0.02),
            chars=(25, 45), clip_seconds=8.1, encode_aspects=("9:16",),
            encode_presets=(), rounds=5,
            memory_scenes=50, memory_chars=(5, 12),
            memory_latencies=Latencies(0.05, 0.05, 0.0))  # fmt: skip
QUICK = Plan(sizes=(2, 6), aspects=("9:16",), latencies=Latencies(1.5, 0.2, 0.02),
             chars=(20, 35), clip_seconds=3.0, encode_aspects=("9:16",),
             encode_presets=(), rounds=1,
             memory_scenes=20, memory_chars=(5, 12),
             memory_latencies=Latencies(0.05, 0.05, 0.0),
             speech_scenes=4, race_image=1.5, queue_scenes=6)  # fmt: skip


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers and commas: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers")
    return values


def _aspects(text: str) -> tuple[str, ...]:
    try:
        return tuple(Aspect.parse(part).value for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated choice of one or more of `allowed`."""

    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(part.strip() for part in text.split(",") if part.strip())
        if not chosen or any(c not in allowed for c in chosen):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return chosen

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="N = 2, 6 on 9:16 only, image latency 1.5 s, 1 encode round, "
        "20-scene memory run (a minute or two)",
    )
    p.add_argument(
        "--only",
        type=_choices(BENCHMARKS),
        default=BENCHMARKS,
        help="comma-separated: render, queue, encode, edit, memory, speech (default: all)",
    )
    p.add_argument("--sizes", type=_ints, help="scenes per render, e.g. 2,6,12")
    p.add_argument("--aspects", type=_aspects, help="of the renders, e.g. 9:16,16:9")
    p.add_argument(
        "--encode-aspects",
        type=_aspects,
        help="of the encode benchmark (default 9:16: the target is at 1080x1920)",
    )
    p.add_argument(
        "--encode-presets",
        type=_choices(X264_PRESETS),
        help="x264 presets to time the encode recipes at besides the shipped one (always "
        "timed), e.g. superfast,faster (default: none)",
    )
    p.add_argument("--image-latency", type=float, help="seconds per image (fake Together)")
    p.add_argument("--tts-latency", type=float, help="seconds per speech request")
    p.add_argument("--tts-per-char", type=float, help="more seconds per narration character")
    p.add_argument("--rounds", type=int, help="encode rounds (median reported)")
    p.add_argument("--clip-seconds", type=float, help="seconds of video per timed clip")
    p.add_argument("--memory-scenes", type=int, help="scenes of the memory run (default 50)")
    p.add_argument("--out", type=Path, default=RESULTS, help="Markdown results (%(default)s)")
    p.add_argument("--no-write", action="store_true", help="print only; write no files")
    p.add_argument("--workdir", type=Path, help="scratch directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return p.parse_args(argv)  # fmt: skip


def make_plan(args: argparse.Namespace) -> Plan:
    base = QUICK if args.quick else FULL
    latencies = Latencies(
        image=base.latencies.image if args.image_latency is None else args.image_latency,
        tts=base.latencies.tts if args.tts_latency is None else args.tts_latency,
        tts_per_char=base.latencies.tts_per_char if args.tts_per_char is None
        else args.tts_per_char,
    )  # fmt: skip
    return Plan(
        sizes=args.sizes or base.sizes,
        aspects=args.aspects or base.aspects,
        latencies=latencies,
        chars=base.chars,
        clip_seconds=args.clip_seconds or base.clip_seconds,
        encode_aspects=args.encode_aspects or base.encode_aspects,
        encode_presets=base.encode_presets if args.encode_presets is None else args.encode_presets,
        rounds=args.rounds or base.rounds,
        memory_scenes=args.memory_scenes or base.memory_scenes,
        memory_chars=base.memory_chars,
        memory_latencies=base.memory_latencies,
        speech_scenes=base.speech_scenes,
        race_image=base.race_image,
        queue_scenes=base.queue_scenes,
    )


def _latency_text(latencies: Latencies, chars: tuple[int, int]) -> str:
    return (
        f"image latency {latencies.image:g} s, one image at a time (the fake Together answers "
        f"429 to any overlap); speech {latencies.tts:g} s + {latencies.tts_per_char:g} s per "
        f"character, 0.06 s of audio per character; narration {chars[0]}-{chars[1]} "
        "characters per scene"
    )


async def run(args: argparse.Namespace, console: Console) -> list[Section]:
    plan = make_plan(args)
    host = machine()
    mode = "quick run (`--quick`)" if args.quick else "full run"
    console.print(f"[bold]reelbot bench[/]: {mode} on {host.describe()}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reelbot-bench-"))
    pictures = None if args.no_write else args.out.parent
    sections: list[Section] = []

    def measured() -> str:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"Measured {when}, {mode}, on {host.describe()}."

    try:
        # Memory first: this process has not yet grown from the other benchmarks' work.
        if "memory" in args.only:
            aspect = plan.aspects[0]
            memory = await memory_run(plan.memory_scenes, aspect=aspect,
                                      latencies=plan.memory_latencies,
                                      chars=plan.memory_chars, workdir=workdir)  # fmt: skip
            console.log(f"memory, {plan.memory_scenes} scenes: {memory.makespan:.0f} s")
            settings = "Settings: " + _latency_text(plan.memory_latencies, plan.memory_chars)
            sections.append(memory_section(memory, settings, measured()))
        if "render" in args.only:
            pairs = []
            for aspect in plan.aspects:
                for scenes in plan.sizes:
                    started = time.monotonic()
                    pair = await render_pair(aspect, scenes, latencies=plan.latencies,
                                             chars=plan.chars, workdir=workdir)  # fmt: skip
                    console.log(
                        f"render {aspect} N={scenes}: {pair.pipelined.makespan:.1f} s, "
                        f"bound {pair.pipelined.lower_bound:.1f} s, efficiency "
                        f"{pair.pipelined.efficiency:.2f}; sequential "
                        f"{pair.sequential.makespan:.1f} s "
                        f"({time.monotonic() - started:.0f} s for both)"
                    )
                    pairs.append(pair)
            settings = "Settings: " + _latency_text(plan.latencies, plan.chars) + (
                "; default settings otherwise (captions on 9:16, loudness normalised), real "
                "ffmpeg, a fresh cache for every render."
            )  # fmt: skip
            sections.append(render_section(pairs, settings, measured()))
            if pictures is not None and pairs:
                largest = max(pairs[: len(plan.sizes)], key=lambda p: p.pipelined.scenes)
                drawn = draw_timelines(largest, pictures)
                console.log(f"timeline: {drawn}")
        if "queue" in args.only:
            started = time.monotonic()
            queue_runs = []
            for renders in (1, 2):  # the one-at-a-time queue, then the default
                run = await queue_run(renders, jobs=plan.queue_jobs, scenes=plan.queue_scenes,
                                      latencies=plan.latencies, chars=plan.chars,
                                      workdir=workdir)  # fmt: skip
                console.log(
                    f"queue, max_concurrent_renders={renders}: {run.makespan:.1f} s, "
                    f"queue efficiency {run.efficiency:.2f}, goal {run.goal:.1f} s"
                )
                queue_runs.append(run)
            key_runs = []
            for keys in (1, 2):
                keyed = await keys_run(keys, scenes=plan.queue_scenes, latencies=plan.latencies,
                                       chars=plan.chars, workdir=workdir)  # fmt: skip
                console.log(f"{keys} key(s): images {keyed.images_span:.1f} s, makespan "
                            f"{keyed.makespan:.1f} s")  # fmt: skip
                key_runs.append(keyed)
            console.log(f"queue: {time.monotonic() - started:.0f} s in all")
            settings = "Settings: " + _latency_text(plan.latencies, plan.chars) + (
                f"; {plan.queue_jobs} jobs of {plan.queue_scenes} scenes, 9:16, queued at once; "
                "default settings otherwise (captions, loudness normalised), real ffmpeg, a "
                "fresh cache for every run."
            )  # fmt: skip
            sections.append(queue_section(queue_runs, key_runs, settings, measured()))
        if "speech" in args.only:
            started = time.monotonic()
            rates = await speech_rates(plan.speech_scenes, plan.speech_chars, workdir)
            race = await piper_race(plan.speech_scenes, image_latency=plan.race_image,
                                    chars=plan.speech_chars, workdir=workdir)  # fmt: skip
            took = time.monotonic() - started
            console.log(f"speech: {', '.join(f'{r.provider} {r.rate:.1f}x' for r in rates)}; "
                        f"Piper render: last narration {race.last_narration:.1f} s, last image "
                        f"{race.last_image:.1f} s ({took:.0f} s)")  # fmt: skip
            settings = (f"Settings: {plan.speech_scenes} narrations of {plan.speech_chars[0]}-"
                        f"{plan.speech_chars[1]} characters, speed 1.0; the render: the same "
                        f"script, images from the fake Together ({plan.race_image:g} s each, "
                        "one at a time), default settings otherwise.")  # fmt: skip
            sections.append(speech_section(rates, race, settings, measured()))
        if "encode" in args.only:
            results = []
            shipped = VideoConfig().preset
            presets = [None, *[p for p in plan.encode_presets if p != shipped]]
            for aspect in plan.encode_aspects:
                for preset in presets:  # the shipped settings (None) first, with smoothness
                    started = time.monotonic()
                    result = await asyncio.to_thread(
                        encode_bench, aspect, seconds=plan.clip_seconds, rounds=plan.rounds,
                        workdir=workdir / "encode", pictures=pictures, preset=preset,
                        smoothness=preset is None, moviepy=preset is None,
                    )  # fmt: skip
                    console.log(f"encode {aspect}, preset {result.preset}: "
                                f"{time.monotonic() - started:.0f} s")  # fmt: skip
                    results.append(result)
            sections.append(encode_section(results, measured()))
        if "edit" in args.only:
            aspect, scenes = plan.aspects[0], max(plan.sizes)
            started = time.monotonic()
            runs = await edit_runs(scenes, aspect=aspect, latencies=plan.latencies,
                                   chars=plan.chars, workdir=workdir,
                                   rounds=plan.rounds)  # fmt: skip
            for edit in runs:
                console.log(f"edit, {edit.front}: {edit.turnaround:.1f} s, bound "
                            f"{edit.bound:.1f} s, {edit.ratio:.2f}× (medians of "
                            f"{len(edit.edits)})")  # fmt: skip
            console.log(f"edit: {time.monotonic() - started:.0f} s in all")
            settings = "Settings: " + _latency_text(plan.latencies, plan.chars) + (
                f"; {aspect}, default settings otherwise (captions on 9:16, loudness "
                "normalised), real ffmpeg."
            )  # fmt: skip
            sections.append(edit_section(runs, settings, measured()))
    finally:
        if args.keep:
            console.print(f"scratch directory kept: {workdir}")
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return sections


def draw_timelines(pair: RenderPair, folder: Path) -> str:
    """The sequential and the pipelined render of one script on one time axis (the chart of
    `reelbot render --timeline`), if pipeline.timeline is there to draw it."""
    try:
        from pipeline.timeline import draw_comparison
    except ImportError as exc:  # drawing is optional; the figures are not
        return f"not drawn ({exc})"
    run = pair.pipelined
    path = folder / f"timeline-{run.aspect.replace(':', 'x')}-{run.scenes}.png"
    title = f"{run.scenes} scenes, {run.aspect}: sequential vs pipelined"
    draw_comparison(pair.sequential.events, run.events, path, title=title)
    return str(path)


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM as Ctrl-C: asyncio.run cancels the benchmark, whose clean-ups (the bot it
    # started, its fakes) then run.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # The figures are for the default settings: no REELBOT_* override from this shell.
    for name in [n for n in os.environ if n.startswith("REELBOT_")]:
        del os.environ[name]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    sections = asyncio.run(run(args, console))
    for section in sorted(sections, key=lambda s: BENCHMARKS.index(s.key)):
        console.print()
        console.print(section.table)
        for verdict in section.verdicts:
            console.print(verdict.replace("**", ""))
    if not args.no_write:
        write_results(args.out, sections)
        console.print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
