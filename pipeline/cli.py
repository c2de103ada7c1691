"""`reelbot`: render a script from the terminal, check the set-up, and host front-end plugins.

Front ends register more sub-commands through the `reelbot.commands` entry point group
(the Discord bot adds `reelbot bot`); the pipeline never imports them directly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .aspect import Aspect
from .config import load_settings
from .doctor import run_doctor
from .errors import ReelbotError, SceneFailed
from .events import JobDone, ProgressEvent, Status
from .plan import plan_render
from .progress import SCENE_STAGES, RenderProgress
from .render import render_plan
from .script import parse_script
from .tts import check_tts, close_tts, default_voice, make_tts, tts_provider
from .tts.base import VoiceInfo
from .tts.voices import list_voices_of, match_voices

__all__ = ["main"]

SYMBOLS = {
    None: "[dim]·[/]",
    Status.WAITING: "[yellow]…[/] waiting",
    Status.STARTED: "[cyan]⟳[/] working",
    Status.DONE: "[green]✓[/] done",
    Status.CACHED: "[green]✓[/] reused",
    Status.FAILED: "[red]✗ failed[/]",
}
console = Console(stderr=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.run(args)
        return result
    except SceneFailed as exc:
        console.print(f"[red]render failed:[/] {escape(str(exc))}", highlight=False)
        return 1
    except ReelbotError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]stopped[/]")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelbot", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log in detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    render = commands.add_parser("render", help="render a script to an MP4")
    render.add_argument("script", type=Path, help="the script (.md, .json or .txt)")
    render.add_argument("-o", "--output", type=Path, help="the MP4 to write")
    render.add_argument("--config", type=Path, help="a config.toml")
    render.add_argument("--aspect", type=_aspect, help="9:16, 16:9 or 1:1")
    render.add_argument("--voice", help="narration voice for every scene (`reelbot voices`)")
    render.add_argument("--title", help="the video's title")
    render.add_argument("--captions", action=argparse.BooleanOptionalAction, default=None,
                        help="burn in captions (default: on for 9:16)")  # fmt: skip
    render.add_argument("--music", type=Path, metavar="FILE",
                        help="background music: an audio file or a folder of them")  # fmt: skip
    render.add_argument("--sequential", action="store_true",
                        help="one scene after another (slow; for comparison)")  # fmt: skip
    render.add_argument("--timeline", type=_png, metavar="FILE.png",
                        help="also draw the render's timeline (a Gantt chart)")  # fmt: skip
    render.set_defaults(run=_render)

    voices = commands.add_parser("voices", help="list the voices of the configured speech provider")
    voices.add_argument("--config", type=Path, help="a config.toml")
    voices.add_argument("filter", nargs="?", default="", help="only voices matching this")
    voices.set_defaults(run=_voices)

    doctor = commands.add_parser("doctor", help="check ffmpeg, espeak-ng, config and keys")
    doctor.add_argument("--config", type=Path, help="a config.toml")
    doctor.set_defaults(run=lambda args: run_doctor(args.config, console))

    for plugin in entry_points(group="reelbot.commands"):
        register: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        try:
            register = plugin.load()
        except ImportError as exc:  # a front end whose dependencies are missing
            logging.getLogger(__name__).debug("plugin %s unavailable: %s", plugin.name, exc)
            continue
        register(commands)
    return parser


def _aspect(text: str) -> Aspect:
    try:
        return Aspect.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _png(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"the timeline is a PNG: name it *.png, not {text}")
    return path


def _render(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    try:
        source = args.script.read_bytes()
    except OSError as exc:
        raise ReelbotError(f"cannot read {args.script}: {exc.strerror}") from None
    script = parse_script(source, filename=args.script.name, limits=settings.limits)
    plan = plan_render(script, settings, aspect=args.aspect, voice=args.voice, title=args.title,
                       captions=args.captions, music=args.music)  # fmt: skip
    check_tts(settings)
    output: Path = args.output or Path(f"{args.script.stem}.mp4")
    progress = RenderProgress()
    events: list[ProgressEvent] = []
    started = time.monotonic()
    try:
        with Live(_table(progress, 0), console=console, refresh_per_second=8) as live:

            def on_event(event: ProgressEvent) -> None:
                events.append(event)
                progress.apply(event)
                live.update(_table(progress, time.monotonic() - started))

            try:
                result = asyncio.run(render_plan(plan, settings, output, on_event=on_event,
                                                 sequential=args.sequential))  # fmt: skip
            finally:
                live.update(_table(progress, time.monotonic() - started))
    finally:
        if args.timeline is not None and events:  # after a failure too: it shows where
            _write_timeline(events, args.timeline)
    done = next(e for e in reversed(result.events) if isinstance(e, JobDone))
    console.print(
        f"[green]✓[/] {done.output}  {done.duration:.1f} s of video, "
        f"{len(plan.scenes)} scenes, {plan.frame}, rendered in {done.t:.1f} s",
        highlight=False,
    )
    return 0


def _voices(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    provider = tts_provider(settings)

    async def fetch() -> list[VoiceInfo]:
        async with httpx.AsyncClient() as client:
            tts = make_tts(settings, client)
            try:
                return await list_voices_of(tts)
            finally:
                await close_tts(tts)

    voices = asyncio.run(fetch())
    shown = match_voices(voices, args.filter, limit=len(voices))
    default = default_voice(settings)
    languages = any(v.language not in (None, v.id) for v in shown)  # a column worth showing
    table = Table(title=f"{provider} voices", title_justify="left")
    for column in ("voice", *(["language"] if languages else []), "what it is"):
        table.add_column(column)
    for voice in shown:
        mark = " [green](default)[/]" if voice.id == default else ""
        language = [escape(voice.language or "")] if languages else []
        table.add_row(escape(voice.id) + mark, *language, escape(voice.label))
    Console().print(table)
    console.print(f"{len(shown)} of {len(voices)} voices; use one with `voice: NAME` in a "
                  "script or --voice NAME", highlight=False)  # fmt: skip
    return 0


def _write_timeline(events: list[ProgressEvent], path: Path) -> None:
    from .timeline import draw_timeline  # matplotlib loads only when a timeline is asked for

    try:
        chart = draw_timeline(events, path)
    except Exception as exc:  # the chart is an extra: it never changes the render's outcome
        logging.getLogger(__name__).debug("drawing the timeline failed", exc_info=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        console.print(f"[yellow]could not write the timeline {escape(str(path))}:[/] "
                      f"{escape(reason)}", highlight=False)  # fmt: skip
        return
    console.print(f"timeline: {escape(str(chart.path))}", highlight=False)


def _table(progress: RenderProgress, elapsed: float) -> Table:
    table = Table(title=progress.title or "reelbot", title_justify="left", expand=False)
    table.add_column("scene", justify="right")
    for stage in SCENE_STAGES:
        table.add_column(stage.value)
    for scene in progress.scenes:
        cells = [SYMBOLS[scene.status(stage)] for stage in SCENE_STAGES]
        table.add_row(str(scene.number), *cells)
        if scene.message:
            table.add_row("", f"[red]{escape(scene.message)}[/]", "", "")
    remaining = progress.estimate_remaining()
    eta = f", about {remaining:.0f} s left" if remaining is not None else ""
    join = SYMBOLS[progress.join] if progress.join else "[dim]·[/]"
    table.caption = f"{progress.fraction:.0%} · join {join} · {elapsed:.1f} s elapsed{eta}"
    table.caption_justify = "left"
    return table


if __name__ == "__main__":
    sys.exit(main())
