"""`reelbot`: render a script from the terminal, draft one from a topic, check the set-up, and
host front-end plugins.

Front ends register more sub-commands through the `reelbot.commands` entry point group
(the Discord bot adds `reelbot bot`); the pipeline never imports them directly.

Exit status: 0 done; 1 the render (or the draft) failed (a scene, the join, a full disk, the
chat server: the input was fine); 2 the input cannot be used (script, its media, config, an
option, the output place); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .aspect import Aspect
from .cache import ArtifactCache
from .config import Settings, load_settings
from .doctor import run_doctor
from .draft import DEFAULT_SCENES, Draft, draft_script
from .errors import InputError, ReelbotError, SceneFailed, StorageError
from .events import JobDone, JobFailed, ProgressEvent, Stage, Status
from .image_slot import stop_grace
from .logs import setup_logging
from .own_media import FolderMedia, OwnMedia, prepare_media
from .places import check_data_dir, check_output, os_reason
from .plan import RenderPlan, plan_render
from .plugins import front_ends
from .progress import SCENE_STAGES, RenderProgress
from .render import render_plan
from .script import parse_script
from .soundtrack import check_music
from .text import clean_text
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
log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    failed = f"[red]{'draft' if args.command == 'draft' else 'render'} failed:[/]"
    try:
        result: int = args.run(args)
        return result
    except InputError as exc:  # the script, the config, an option: exit 2
        _say("[red]error:[/]", exc)
        return 2
    except SceneFailed as exc:
        _say(failed, exc)
        return 1
    except ReelbotError as exc:  # the join, the sound, the disk, a server: the input was fine
        _say(failed, exc)
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]stopped[/]")
        return 130
    except OSError as exc:  # a file the render needed, outside the checked places
        log.debug("%s failed", args.command, exc_info=True)
        _say(failed, StorageError(os_reason(exc)))
        return 1
    except Exception as exc:  # a bug: the traceback is for -vv, the user gets one line
        log.debug("unexpected error", exc_info=True)
        _say("[red]unexpected error (a bug; `-vv` shows where):[/]", exc)
        return 1


def _say(label: str, error: Exception) -> None:
    """One line: the message cleaned (no control character reaches the terminal) and escaped
    for rich (no bracket in it is read as markup)."""
    console.print(f"{label} {escape(clean_text(str(error)))}", highlight=False, soft_wrap=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelbot", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    _verbose(parser, default=0)
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

    draft = commands.add_parser(
        "draft", help="draft a script from a topic with a chat model ([llm] in the config)"
    )
    draft.add_argument("topic", help='what the video is about, e.g. "why cats purr"')
    draft.add_argument("--scenes", type=_scene_count, default=DEFAULT_SCENES, metavar="N",
                       help=f"how many scenes (default {DEFAULT_SCENES})")  # fmt: skip
    draft.add_argument("--aspect", type=_aspect, help="9:16, 16:9 or 1:1 (default: [video] aspect)")
    draft.add_argument("-o", "--output", type=Path, metavar="FILE.md",
                       help="write the script here (default: print it)")  # fmt: skip
    draft.add_argument("--force", action="store_true", help="overwrite FILE.md if it exists")
    draft.add_argument("--config", type=Path, help="a config.toml")
    draft.set_defaults(run=_draft)

    voices = commands.add_parser("voices", help="list the voices of the configured speech provider")
    voices.add_argument("--config", type=Path, help="a config.toml")
    voices.add_argument("filter", nargs="?", default="", help="only voices matching this")
    voices.set_defaults(run=_voices)

    doctor = commands.add_parser("doctor", help="check ffmpeg, espeak-ng, config and keys")
    doctor.add_argument("--config", type=Path, help="a config.toml")
    doctor.add_argument("--online", action="store_true",
                        help="also ask Together.ai whether it takes the key and offers the "
                        "model (one model-list request; no image is made)")  # fmt: skip
    doctor.set_defaults(run=lambda args: run_doctor(args.config, console, online=args.online))

    for front_end in front_ends():
        front_end.register(commands)
    for command in commands.choices.values():  # `reelbot render -v` as well as `reelbot -v ...`
        _verbose(command, default=argparse.SUPPRESS)
    return parser


def _verbose(parser: argparse.ArgumentParser, *, default: object) -> None:
    if any("-v" in action.option_strings for action in parser._actions):
        return
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="log each stage (-vv: and each HTTP request)")  # fmt: skip


def _aspect(text: str) -> Aspect:
    try:
        return Aspect.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scene_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 999:
        raise argparse.ArgumentTypeError(f"a number of scenes, from 1, not {text!r}")
    return int(text)


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
        raise InputError(f"cannot read the script {args.script}: {exc.strerror}") from None
    script = parse_script(source, filename=args.script.name, limits=settings.limits)
    # Every place the render writes is checked now, not after minutes of work (the timeline
    # is an extra: it never changes the outcome, and a failure to write it is said after).
    output = check_output(args.output or Path(f"{args.script.stem}.mp4"), what="the video")
    check_data_dir(settings.storage.data_dir)
    cache = ArtifactCache(settings.storage.data_dir / "cache")
    # The scenes' own media: found next to the script, checked and copied into the cache
    # before anything is asked of a service, and pinned there until the render ends.
    with cache.pinning() as pin:
        media: dict[int, OwnMedia] = {}
        if any(scene.media is not None for scene in script.scenes):
            folder = FolderMedia(args.script.parent)
            media = asyncio.run(prepare_media(script, folder, cache, settings.limits, pin=pin))
        plan = plan_render(script, settings, aspect=args.aspect, voice=args.voice,
                           title=args.title, captions=args.captions, music=args.music,
                           media=media)  # fmt: skip
        return _render_plan(args, settings, plan, output)


def _render_plan(
    args: argparse.Namespace, settings: Settings, plan: RenderPlan, output: Path
) -> int:
    if plan.music is not None:
        asyncio.run(check_music(plan.music))
    check_tts(settings)
    progress = RenderProgress()
    events: list[ProgressEvent] = []
    started = time.monotonic()
    own = {s.number: s.media.label for s in plan.scenes if s.media is not None}
    # The live table only on a terminal; elsewhere (a log, a pipe) the outcome's one line.
    live = Live(_table(progress, 0, own), console=console, refresh_per_second=8,
                transient=False) if console.is_terminal else None  # fmt: skip

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        progress.apply(event)
        if live is not None:
            live.update(_table(progress, time.monotonic() - started, own))
        if isinstance(event, JobFailed):  # stopped or failed: an image may be in flight
            _say_images_kept(progress, stop_grace(settings.images))

    try:
        with live or contextlib.nullcontext():
            result = asyncio.run(render_plan(plan, settings, output, on_event=on_event,
                                             sequential=args.sequential))  # fmt: skip
    finally:
        if live is not None:
            live.update(_table(progress, time.monotonic() - started, own))
        if args.timeline is not None and events:  # after a failure too: it shows where
            _write_timeline(events, args.timeline, settings.storage.data_dir)
    done = next(e for e in reversed(result.events) if isinstance(e, JobDone))
    console.print(
        f"[green]✓[/] {escape(str(done.output))}  {done.duration:.1f} s of video, "
        f"{len(plan.scenes)} scenes, {plan.frame}, rendered in {done.t:.1f} s",
        highlight=False,
    )
    return 0


def _draft(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    output = args.output
    if output is not None:
        if output.exists() and not args.force:
            raise InputError(f"{output} exists; choose another name, or --force to replace it")
        check_output(output, what="the script")

    async def ask() -> Draft:
        async with httpx.AsyncClient() as client:
            return await draft_script(args.topic, settings, client, scenes=args.scenes,
                                      aspect=args.aspect)  # fmt: skip

    with console.status(f"drafting {args.scenes} scenes with {escape(settings.llm.model)}…"):
        draft = asyncio.run(ask())
    if draft.first_problem is not None:
        console.print(f"[yellow]the first draft was sent back ({escape(draft.first_problem)});"
                      " the second one is usable[/]", highlight=False)  # fmt: skip
    scenes = len(draft.script.scenes)
    summary = f"{scenes} scenes, {draft.script.aspect}, by {escape(draft.model)}"
    if output is None:
        sys.stdout.write(draft.text)
        sys.stdout.flush()
        console.print(f"[green]✓[/] drafted {escape(draft.script.title)!r}: {summary}",
                      highlight=False)  # fmt: skip
        return 0
    temp = output.with_name(f".{output.name}.part")
    try:
        temp.write_text(draft.text, encoding="utf-8")
        temp.replace(output)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StorageError(f"cannot write the script {output}: {os_reason(exc)}") from None
    console.print(f"[green]✓[/] {escape(str(output))}: {summary}. Read it, edit it, then "
                  f"`reelbot render {escape(str(output))}`", highlight=False)  # fmt: skip
    return 0


def _say_images_kept(progress: RenderProgress, grace: float) -> None:
    making = [s.number for s in progress.scenes if s.status(Stage.IMAGE) is Status.STARTED]
    if making:
        scenes = ", ".join(str(n) for n in making)
        note = f"(at most {grace:.0f} s; Ctrl-C to quit now)"
        console.print(f"[yellow]finishing the image of scene {scenes} so it is kept {note}[/]",
                      highlight=False)  # fmt: skip


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


def _write_timeline(events: list[ProgressEvent], path: Path, data_dir: Path) -> None:
    # matplotlib keeps a font cache; in the data folder, like every file reelbot makes.
    os.environ.setdefault("MPLCONFIGDIR", str((data_dir / "matplotlib").resolve()))
    from .timeline import draw_timeline  # matplotlib loads only when a timeline is asked for

    try:
        chart = draw_timeline(events, path)
    except Exception as exc:  # the chart is an extra: it never changes the render's outcome
        log.debug("drawing the timeline failed", exc_info=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        console.print(f"[yellow]could not write the timeline {escape(str(path))}:[/] "
                      f"{escape(reason)}", highlight=False)  # fmt: skip
        return
    console.print(f"timeline: {escape(str(chart.path))}", highlight=False)


def _table(progress: RenderProgress, elapsed: float, own: Mapping[int, str] | None = None) -> Table:
    """`own`: the scenes with their own media, and what it is ("own picture")."""
    own = own or {}
    # The title is the user's text: escaped, so `[/x]` in it is shown, not read as markup.
    table = Table(title=escape(progress.title or "reelbot"), title_justify="left", expand=False)
    table.add_column("scene", justify="right")
    for stage in SCENE_STAGES:
        table.add_column(stage.value)
    for scene in progress.scenes:
        cells = [SYMBOLS[scene.status(stage)] for stage in SCENE_STAGES]
        if scene.number in own and scene.status(Stage.IMAGE) is Status.CACHED:
            cells[SCENE_STAGES.index(Stage.IMAGE)] = f"[green]✓[/] {own[scene.number]}"
        table.add_row(str(scene.number), *cells)
        if scene.message:
            table.add_row("", f"[red]{escape(scene.message)}[/]", "", "")
        elif scene.note:  # e.g. the image waiting out a rate limit
            waiting = f"{scene.note_stage.value}: " if scene.note_stage else ""
            table.add_row("", f"[yellow]{waiting}{escape(scene.note)}[/]", "", "")
    remaining = progress.estimate_remaining()
    eta = f", about {remaining:.0f} s left" if remaining is not None else ""
    join = SYMBOLS[progress.join] if progress.join else "[dim]·[/]"
    table.caption = f"{progress.fraction:.0%} · join {join} · {elapsed:.1f} s elapsed{eta}"
    table.caption_justify = "left"
    return table


if __name__ == "__main__":
    sys.exit(main())
