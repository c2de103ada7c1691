"""Tables: printed with rich, and written as Markdown to bench/results.md.

results.md holds one section per benchmark between markers, so a run of one benchmark
(`--only encode`) replaces its own section and leaves the others as they were."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from .encode import (
    CODEC_ONLY,
    FLOOR,
    KEN_BURNS,
    LOOPED,
    PREVIOUS,
    READ_ONLY,
    RESAMPLE_ONLY,
    EncodeResult,
)
from .measure import median
from .memory import MemoryRun
from .render import RenderPair
from .speech import RenderRace, SpeechRate

# Targets of issue 7.
EFFICIENCY_TARGET = 0.9  # at N = 12
FLOOR_TARGET = 1.5  # Ken Burns / floor at 1080x1920
SMOOTH_TARGET = 0.1  # px: a step error below this is invisible (and far below rounding's)

HEADER = """\
# Benchmark results

Written by `make bench` (`.venv/bin/python -m bench`); see "Benchmarks" in the README for
what the figures mean. Every figure comes from one run, and every ratio compares runs made
side by side in that run, so a busy machine moves both sides of a ratio together.
"""


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    table: Table
    markdown: str
    verdicts: list[str]  # the targets, met or not (also in `markdown`)


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rich_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


# ------------------------------------------------------------------ render


def render_section(pairs: Sequence[RenderPair], settings: str, measured: str) -> Section:
    headers = ["output", "scenes", "makespan", "lower bound", "= images / TTS",
               "+ last clip", "+ join", "efficiency", "strict", "sequential",
               "speed-up"]  # fmt: skip
    rows = []
    for pair in pairs:
        run = pair.pipelined
        first = _s(run.images) if run.images >= run.tts_finish else f"{_s(run.tts_finish)} (TTS)"
        rows.append([run.aspect, str(run.scenes), _s(run.makespan), _s(run.lower_bound),
                     first, _s(run.last_clip), _s(run.join), f"{run.efficiency:.2f}",
                     f"{pair.strict_efficiency:.2f}", _s(pair.sequential.makespan),
                     f"{pair.speedup:.2f}×"])  # fmt: skip
    verdicts = []
    for pair in pairs:
        if pair.pipelined.scenes == 12:
            eff, strict = pair.pipelined.efficiency, pair.strict_efficiency
            verdicts.append(f"{pair.pipelined.aspect}: {eff:.2f} "
                            f"({_verdict(eff >= EFFICIENCY_TARGET)}; strict {strict:.2f}, "
                            f"{_verdict(strict >= EFFICIENCY_TARGET)})")  # fmt: skip
    target = (
        f"Target: efficiency ≥ {EFFICIENCY_TARGET} at N = 12 — " + "; ".join(verdicts) + "."
        if verdicts
        else f"Target: efficiency ≥ {EFFICIENCY_TARGET} at N = 12 (not run here)."
    )
    markdown = "\n\n".join([
        measured,
        settings,
        _md_table(headers, rows),
        target,
        "*lower bound* = max(N × image latency, last narration done) + the encode of the clip "
        "of the last image + the join (with the sound pass), both measured in the same run; "
        "*efficiency* = lower bound / makespan. *strict*: the same with that clip's encode and "
        "the join each at the faster of their two measurements, in this run and in the "
        "sequential one (which encodes the same clip alone), so that encodes still running "
        "beside the last one cannot stretch the bound. *speed-up* = makespan of `--sequential` "
        "(image → speech → clip, one scene after another: the old model) / makespan, same "
        "script, run right after.",
    ])  # fmt: skip
    return Section("render", "Render makespan against the critical path",
                   _rich_table("Render makespan", headers, rows), markdown, [target])  # fmt: skip


# ------------------------------------------------------------------ encode

LABELS = {
    FLOOR: "floor (still_argv)",
    KEN_BURNS: "Ken Burns (clip_argv)",
    CODEC_ONLY: "codec only",
    READ_ONLY: "reading the frames",
    RESAMPLE_ONLY: "resample only",
    PREVIOUS: "previous Ken Burns",
    LOOPED: "looped still",
}
RECIPES = (
    "*floor*: the same picture, duration and codec settings as the clip, no motion "
    "(`still_argv`: decoded and scaled once, the frame repeated). *Ken Burns*: the clip "
    "recipe (`clip_argv`). *codec only*: the encoder alone, fed the Ken Burns frames already "
    "made (raw, from a file), with the clip's output options: what coding that motion costs. "
    "*reading the frames*: codec only's input read and dropped, nothing encoded: its cost "
    "outside the encoder. "
    "*resample only*: the floor, with the picture resampled to the frame size for every frame "
    "by swscale (ffmpeg's fastest resampler; the same frame each time, so no motion to code): "
    "the least any zoom spends making its frames. *previous*: the recipe `clip_argv` had "
    "before (zoompan on a 2× upscaled picture), for comparison. *looped still*: `still_argv` "
    "as it was before (`-loop 1`: the picture "
    "decoded and scaled again for every frame): not a floor, since half its time is spent "
    "outside the encoder; shown because the 1.5× target may have been set against it."
)


def encode_section(results: Sequence[EncodeResult], measured: str) -> Section:
    headers = ["output", "preset", "recipe", "wall", "CPU", "video s / wall s",
               "× floor (wall)", "× floor (CPU)", "size", "step error", "path error"]  # fmt: skip
    rows = []
    for result in results:
        for recipe in result.recipes:
            smooth = recipe.smoothness
            rows.append([
                result.aspect, result.preset, LABELS[recipe.name], _s(recipe.wall),
                _s(recipe.cpu), f"{result.speed(recipe.name):.2f}",
                f"{median(recipe.wall_ratios):.2f}", f"{median(recipe.cpu_ratios):.2f}",
                f"{recipe.size / 1024:.0f} KiB" if recipe.size else "",
                f"{smooth.step_error:.3f} px" if smooth else "",
                f"{smooth.path_error:.3f} px" if smooth else "",
            ])  # fmt: skip
    verdicts = [_encode_verdict(result, results) for result in results
                if tuple(result.frame) == (1080, 1920)]  # fmt: skip
    for result in results:
        smooth = result.recipe(KEN_BURNS).smoothness
        if tuple(result.frame) == (1080, 1920) and smooth is not None:
            verdicts.append(
                f"Smoothness: worst step error {smooth.step_error:.3f} px "
                f"({_verdict(smooth.step_error <= SMOOTH_TARGET)} ≤ {SMOOTH_TARGET} px), "
                f"worst path error {smooth.path_error:.3f} px; frame strips: "
                "`bench/zoom-slit-9x16.png` (one row through a moving dot, one line per "
                "frame: previous recipe left, current right; steps show as a staircase) and "
                "`bench/zoom-strip-9x16.png` (8 consecutive frames; previous above)."
            )
    first = results[0] if results else None
    setup = (
        "Each clip: a photo-like picture at the API's size for the "
        f"aspect, {first.seconds:.1f} s of video (narration + pad), default `[video]` settings "
        f"(libx264 preset {first.preset}, crf 21, yuv420p, AAC; other presets where the preset "
        f"column says so). Median of {first.rounds} rounds; in "
        "each round every recipe runs once, one after the other, in a rotating order, and its "
        "ratio is taken to the floor of the same round. CPU is user + system time of the "
        "ffmpeg process: on a shared machine it is steadier than wall time, which counts "
        "waiting for the CPU too. Smoothness: a chart of dots through the same recipe at "
        "crf 1, each dot's centroid tracked in every frame and compared with the exact zoom."
        if first
        else ""
    )
    markdown = "\n\n".join([measured, setup, _md_table(headers, rows), RECIPES, *verdicts])
    return Section("encode", "Clip encoding against the encode floor",
                   _rich_table("Clip encoding", headers, rows), markdown, verdicts)  # fmt: skip


def _encode_verdict(result: EncodeResult, results: Sequence[EncodeResult]) -> str:
    ratio, codec = result.ratio(KEN_BURNS, FLOOR), result.ratio(CODEC_ONLY, FLOOR)
    read, resample = result.ratio(READ_ONLY, FLOOR), result.ratio(RESAMPLE_ONLY, FLOOR)
    bound = result.bound()
    if not result.default:
        shipped = next((r for r in results if r.default and r.aspect == result.aspect), None)
        size = ""
        if shipped is not None:
            grown = result.recipe(KEN_BURNS).size / shipped.recipe(KEN_BURNS).size
            size = f"; its clip is {grown:.2f}× the size of the {shipped.preset} one"
        return (
            f"At preset {result.preset}: Ken Burns {ratio:.2f}× its floor (codec only "
            f"{codec:.2f}× less {read:.2f}× reading its frames, resample only {resample:.2f}×, "
            f"so no zoom below {bound:.2f}×){size}."
        )
    looped = result.ratio(KEN_BURNS, LOOPED)
    return (
        f"Target: Ken Burns ≤ {FLOOR_TARGET}× the floor at 1080x1920 — {ratio:.2f}× "
        f"({_verdict(ratio <= FLOOR_TARGET)}). Two rows bound every zoom recipe from below: "
        f"the encoder alone coding the motion takes {codec:.2f}× the floor ({codec - read:.2f}× "
        f"less the {read:.2f}× of reading its frames), and making the "
        f"frames costs at least a resample per frame, which alone takes {resample:.2f}× (a "
        f"still picture, so nothing extra to code); so no zoom, smooth or not, can go below "
        f"about {bound:.2f}× at these settings on this machine, and Ken Burns is "
        f"{ratio / bound:.2f}× that bound. Against the looped still instead, Ken Burns takes "
        f"{looped:.2f}×."
    )


# ------------------------------------------------------------------ memory


def memory_section(run: MemoryRun, settings: str, measured: str) -> Section:
    headers = ["scenes", "makespan", "video", "peak RSS, process tree", "of which Python",
               "Python before", "peak PSS, process tree", "ffmpeg at once (encoding)",
               "cache (end / peak)", "output"]  # fmt: skip
    rows = [[
        f"{run.scenes} ({run.aspect})", _s(run.makespan), _s(run.video_seconds),
        _mib(run.peak_rss), _mib(run.peak_own_rss), _mib(run.baseline_rss), _mib(run.peak_pss),
        f"{run.peak_ffmpeg} ({run.peak_encoders})", f"{_mib(run.disk)} / {_mib(run.peak_disk)}",
        _mib(run.output),
    ]]  # fmt: skip
    markdown = "\n\n".join([
        measured,
        settings,
        _md_table(headers, rows),
        f"RSS and PSS sampled every 50 ms ({run.samples} samples) over this process and all "
        "its descendants, from /proc. The RSS sum counts the pages processes share (ffmpeg's "
        "libraries) once per process: an upper bound. The PSS sum counts them once in all: "
        "closer to the memory the render needs. Python's share includes the in-process fakes "
        "and their pictures; *Python before* is this process just before the render. The "
        "cache is the data directory (images, narrations, clips): a render deletes nothing, "
        "so its end figure is what the script leaves behind.",
    ])  # fmt: skip
    return Section("memory", "Memory and disk of a long render",
                   _rich_table("Memory and disk", headers, rows), markdown, [])  # fmt: skip


def speech_section(rates: Sequence[SpeechRate], race: RenderRace | None, settings: str,
                   measured: str) -> Section:  # fmt: skip
    headers = ["provider", "scenes", "speech made", "wall time", "speech s / wall s",
               "speech s / CPU s", "voice load", "helper peak RSS"]  # fmt: skip
    rows = [[
        r.provider, str(r.scenes), _s(r.audio), _s(r.wall), f"{r.rate:.1f}",
        f"{r.cpu_rate:.1f}" if r.cpu else "", _s(r.load) if r.load else "",
        _mib(r.peak_rss) if r.peak_rss else "",
    ] for r in rates]  # fmt: skip
    parts = [measured, settings, _md_table(headers, rows)]
    verdicts = []
    if race is not None:
        verdict = (
            f"{_verdict(race.ahead)} With Piper, a {race.scenes}-scene render "
            f"({race.image_latency:g} s per image) had every narration done at "
            f"{_s(race.last_narration)}, before the last image came back at "
            f"{_s(race.last_image)} (it was asked for at {_s(race.last_image_started)}); "
            f"the render took {_s(race.makespan)}."
            if race.ahead else
            f"{_verdict(False)} With Piper, a {race.scenes}-scene render "
            f"({race.image_latency:g} s per image) had its last narration done at "
            f"{_s(race.last_narration)}, after the last image ({_s(race.last_image)})."
        )  # fmt: skip
        verdicts.append(verdict)
        parts.append(verdict)
    parts.append(
        "Every scene asked for at once, as a render asks: espeak-ng runs a process per scene, "
        "Piper one helper process per voice speaking them one after another. Piper's voice "
        "load (the first request: the model read and patched in memory for its alignments) "
        "is timed apart. The helper's RSS is sampled every 50 ms from /proc. *Speech s / CPU "
        "s* divides by the CPU time the speaking processes used (from /proc and getrusage), "
        "which a machine busy with other work changes far less than the wall time."
    )
    table = _rich_table("Speech", headers, rows)
    return Section("speech", "Speech: espeak-ng and Piper", table, "\n\n".join(parts), verdicts)


# ------------------------------------------------------------------ results.md


def _block(section: Section) -> str:
    return (f"<!-- bench:{section.key} -->\n## {section.title}\n\n{section.markdown.strip()}\n"
            f"<!-- /bench:{section.key} -->")  # fmt: skip


ORDER = ("render", "encode", "memory", "speech")


def write_results(path: Path, sections: Sequence[Section]) -> None:
    """Write `sections` into `path`, keeping the sections of earlier runs not redone."""
    blocks: dict[str, str] = {}
    if path.exists():
        text = path.read_text(encoding="utf-8")
        for key in ORDER:
            found = re.search(rf"<!-- bench:{key} -->.*?<!-- /bench:{key} -->", text, re.S)
            if found:
                blocks[key] = found.group(0)
    for section in sections:
        blocks[section.key] = _block(section)
    body = "\n\n".join(blocks[key] for key in ORDER if key in blocks)
    path.write_text(f"{HEADER}\n{body}\n", encoding="utf-8")
