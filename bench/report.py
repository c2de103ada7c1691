"""Tables: printed with rich, and written as Markdown to bench/results.md.

results.md holds one section per benchmark between markers, so a run of one benchmark
(`--only encode`) replaces its own section and leaves the others as they were."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from .edit import EDIT_SLACK, EditRun
from .encode import (
    CODEC_ONLY,
    FLOOR,
    KEN_BURNS,
    MOVIEPY,
    PREVIOUS,
    READ_ONLY,
    RECIPE_2,
    RESAMPLE_ONLY,
    EncodeResult,
)
from .measure import median
from .memory import MemoryRun
from .queue import GOAL_SLACK, KeysRun, QueueRun
from .render import RenderPair
from .speech import RenderRace, SpeechRate

# Targets of issues 7 and 19.
EFFICIENCY_TARGET = 0.9  # at N = 12
MOVIEPY_AIM, MOVIEPY_FLOOR = 10.0, 8.5  # MoviePy's wall time / the clip's, at 1080x1920
CODEC_ONLY_TARGET = 1.2  # the clip / codec only (wall), at 1080x1920
SSIM_LOSS = 0.005  # the shipped clip's SSIM may be at most this below recipe 2's
SIZE_GROWTH = 1.10  # ... and its file at most this much bigger
SMOOTH_TARGET = 0.1  # px: a step error below this is invisible (and far below rounding's)

HEADER = """\
# Benchmark results

Written by `make bench` (`.venv/bin/python -m bench`); see [bench/README.md](README.md) for
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
        "of the last image + the join (with adding the soundtrack, made beside the images; "
        "in the sequential run, the whole sound pass), both measured in the same run; "
        "*efficiency* = lower bound / makespan. *strict*: the same with that clip's encode and "
        "the join each at the faster of their two measurements, in this run and in the "
        "sequential one (which encodes the same clip alone), so that encodes still running "
        "beside the last one cannot stretch the bound. *speed-up* = makespan of `--sequential` "
        "(image → speech → clip, one scene after another: the old model) / makespan, same "
        "script, run right after.",
    ])  # fmt: skip
    return Section("render", "Render makespan against the critical path",
                   _rich_table("Render makespan", headers, rows), markdown, [target])  # fmt: skip


# ------------------------------------------------------------------ queue


def queue_section(
    runs: Sequence[QueueRun], keys: Sequence[KeysRun], settings: str, measured: str
) -> Section:
    headers = ["max_concurrent_renders", "jobs × scenes", "makespan", "total image time",
               "queue efficiency", "tail", "goal", "jobs done at"]  # fmt: skip
    rows = [[f"{run.renders}" + (" (one at a time)" if run.renders == 1 else ""),
             f"{run.jobs} × {run.scenes}", _s(run.makespan), _s(run.images),
             f"{run.efficiency:.2f}", _s(run.tail), _s(run.goal),
             ", ".join(f"{t:.0f}" for t in run.finished) + " s"]
            for run in runs]  # fmt: skip
    verdicts = []
    for run in runs:
        if run.renders > 1:
            met = run.makespan <= run.goal
            verdicts.append(
                f"Goal (max_concurrent_renders = {run.renders}): makespan ≤ {GOAL_SLACK} × "
                f"{_s(run.images)} + tail {_s(run.tail)} = {_s(run.goal)}: "
                f"{_s(run.makespan)}, {_verdict(met)}; jobs finished in job order: "
                f"{'yes' if run.in_job_order else '**no**'}."
            )
    key_headers = ["keys", "scenes", "images' span", "one key back to back", "makespan",
                   "requests per key"]  # fmt: skip
    key_rows = [[str(k.keys), str(k.scenes), _s(k.images_span), _s(k.images_alone),
                 _s(k.makespan), " + ".join(str(n) for n in k.per_key)]
                for k in keys]  # fmt: skip
    by_keys = {k.keys: k for k in keys}
    if 1 in by_keys and 2 in by_keys:
        ratio = by_keys[2].images_span / by_keys[1].images_span
        verdicts.append(f"Two keys: the images take {ratio:.2f}× as long as with one "
                        f"({_s(by_keys[2].images_span)} against "
                        f"{_s(by_keys[1].images_span)}).")  # fmt: skip
    parts = [measured, settings]
    if rows:
        parts += [_md_table(headers, rows)]
    if key_rows:
        parts += [_md_table(key_headers, key_rows)]
    parts += verdicts
    parts.append(
        "*queue efficiency* = total image time (every image back to back through the one "
        "key's slot: jobs × scenes × image latency) / makespan (from the runner's start to "
        "the last job's delivery), the jobs queued at once in the bot's own job runner. *tail*: "
        "the last job's last image to its video (its last clip, join and sound pass); *goal* = "
        f"{GOAL_SLACK} × total image time + tail. *images' span*: one render's first image "
        "started to its last image done, with `[images] keys` naming one key, then two (each "
        "its own account at the fake: one request at a time each)."
    )
    table = _rich_table("Queue efficiency", headers, rows)
    if key_rows:
        table.caption = "  ".join(
            f"{k.keys} key(s): images {_s(k.images_span)}, makespan {_s(k.makespan)}" for k in keys
        )
    return Section("queue", "A team's queue, and more keys", table, "\n\n".join(parts),
                   verdicts)  # fmt: skip


# ------------------------------------------------------------------ encode

LABELS = {
    MOVIEPY: "MoviePy",
    KEN_BURNS: "Ken Burns (clip_argv)",
    RECIPE_2: "recipe 2 (before)",
    CODEC_ONLY: "codec only",
    READ_ONLY: "reading the frames",
    FLOOR: "floor (still_argv)",
    RESAMPLE_ONLY: "resample only",
    PREVIOUS: "previous Ken Burns",
}
RECIPES = (
    "*MoviePy*: the same scene made as MoviePy-based tools make it (`bench/moviepy_clip.py`: "
    "cover-resize, zoom by `resized(t)`, `CompositeVideoClip`, `write_videofile(fps=30, "
    'codec="libx264", audio_codec="aac", threads=2)` at its default preset, medium, with '
    "the ffmpeg MoviePy brings), a Python process of its own. *Ken Burns*: the shipped clip "
    "recipe (`clip_argv`: per frame, a crop and one swscale resample at sizes that make the "
    "exact zoom, `pipeline/zoom.py`). *recipe 2*: the clip recipe before this one "
    "(`perspective` then zoompan, plain x264 preset), the yardstick of quality and size. "
    "*codec only*: the "
    "encoder alone, fed the Ken Burns frames already made (raw, from a file), with the "
    "clip's output options: what coding that motion costs. *reading the frames*: codec "
    "only's input read and dropped, nothing encoded. *floor*: the same picture, duration and "
    "codec settings as the clip, no motion (`still_argv`). *resample only*: the floor with "
    "the picture resampled to the frame size for every frame by swscale (no motion to "
    "code). *previous*: the recipe before the sub-pixel zoom (zoompan on a 2× picture), for "
    "the smoothness figures. *SSIM*: of the clip's frames against the exact zoom rendered "
    "losslessly (Pillow, Lanczos, sub-pixel box; ffmpeg's `ssim` filter, All); 1 is "
    "identical."
)


def _ratio(result: EncodeResult, name: str) -> str:
    if not result.has(MOVIEPY) or name == MOVIEPY:
        return ""
    return f"{1 / result.ratio(name, MOVIEPY):.2f}×"


def encode_section(results: Sequence[EncodeResult], measured: str) -> Section:
    headers = ["output", "preset", "recipe", "wall", "CPU", "video s / wall s",
               "MoviePy ÷ this (wall)", "× floor (wall)", "× floor (CPU)", "size", "SSIM",
               "step error", "path error"]  # fmt: skip
    rows = []
    for result in results:
        for name in LABELS:
            if not result.has(name):
                continue
            recipe = result.recipe(name)
            smooth = recipe.smoothness
            rows.append([
                result.aspect, result.preset, LABELS[name], _s(recipe.wall),
                _s(recipe.cpu), f"{result.speed(name):.2f}", _ratio(result, name),
                f"{median(recipe.wall_ratios):.2f}", f"{median(recipe.cpu_ratios):.2f}",
                f"{recipe.size / 1024:.0f} KiB" if recipe.size else "",
                f"{recipe.ssim:.4f}" if recipe.ssim is not None else "",
                f"{smooth.step_error:.3f} px" if smooth else "",
                f"{smooth.path_error:.3f} px" if smooth else "",
            ])  # fmt: skip
    verdicts = [v for result in results if tuple(result.frame) == (1080, 1920)
                for v in _encode_verdicts(result, results)]  # fmt: skip
    first = results[0] if results else None
    setup = (
        f"Each clip: one scene of {first.seconds:.1f} s (narration + pad) at 30 fps, a "
        f"photo-like picture at the API's size for the aspect ({first.picture.width}x"
        f"{first.picture.height}), default `[video]` settings (libx264 preset {first.preset}, "
        "crf 21, yuv420p, AAC; other presets where the preset column says so). Median of "
        f"{first.rounds} rounds; in each round every recipe runs once, one after the other, "
        "in a rotating order, and each ratio is taken within the round. CPU is user + "
        "system time of the process and its children: on a shared machine it is steadier "
        "than wall time, which counts waiting for the CPU too. Smoothness: a chart of dots "
        "through the same recipe at crf 1, each dot's centroid tracked in every frame and "
        "compared with the exact zoom."
        if first
        else ""
    )
    markdown = "\n\n".join([measured, setup, _md_table(headers, rows), RECIPES, *verdicts])
    return Section("encode", "Clip encoding against MoviePy and the encoder",
                   _rich_table("Clip encoding", headers, rows), markdown, verdicts)  # fmt: skip


def _encode_verdicts(result: EncodeResult, results: Sequence[EncodeResult]) -> list[str]:
    codec, read = result.ratio(CODEC_ONLY, FLOOR), result.ratio(READ_ONLY, FLOOR)
    resample = result.ratio(RESAMPLE_ONLY, FLOOR)
    over_codec = result.ratio(KEN_BURNS, CODEC_ONLY)
    if not result.default:
        base = next((r for r in results if r.default and r.aspect == result.aspect), None)
        size = ""
        if base is not None:
            grown = result.recipe(KEN_BURNS).size / base.recipe(KEN_BURNS).size
            size = f"; its clip is {grown:.2f}× the size of the {base.preset} one"
        return [
            f"At preset {result.preset}: Ken Burns {over_codec:.2f}× codec only "
            f"({result.ratio(KEN_BURNS, FLOOR):.2f}× its floor; codec only {codec:.2f}× less "
            f"{read:.2f}× reading its frames, resample only {resample:.2f}×){size}."
        ]
    verdicts = []
    shipped, before = result.recipe(KEN_BURNS), result.recipe(RECIPE_2)
    if result.has(MOVIEPY):
        speed = 1 / result.ratio(KEN_BURNS, MOVIEPY)
        encoder = 1 / result.ratio(CODEC_ONLY, MOVIEPY)
        old = 1 / result.ratio(RECIPE_2, MOVIEPY)
        verdicts.append(
            f"Target: Ken Burns ≥ {MOVIEPY_AIM:g}× faster than MoviePy (at least "
            f"{MOVIEPY_FLOOR:g}×) at 1080x1920 — {speed:.2f}× "
            f"({_verdict(speed >= MOVIEPY_AIM)}; at least {MOVIEPY_FLOOR:g}×: "
            f"{_verdict(speed >= MOVIEPY_FLOOR)}); recipe 2 was {old:.2f}×. The encoder "
            f"alone, fed ready-made frames (codec only), is {encoder:.2f}× MoviePy: no recipe "
            "making its frames can be faster at these codec settings."
        )
    else:
        verdicts.append("MoviePy is not installed (`make bench` installs it): no MoviePy row.")
    if shipped.ssim is not None and before.ssim is not None and before.size:
        loss, grown = before.ssim - shipped.ssim, shipped.size / before.size
        verdicts.append(
            f"Quality: SSIM {shipped.ssim:.4f} against recipe 2's {before.ssim:.4f}, "
            f"{f'a loss of {loss:.4f}' if loss > 0 else f'a gain of {-loss:.4f}'} "
            f"({_verdict(loss <= SSIM_LOSS)}: a loss ≤ {SSIM_LOSS}); the clip is "
            f"{grown:.3f}× recipe 2's size ({_verdict(grown <= SIZE_GROWTH)} ≤ {SIZE_GROWTH:g}×)."
        )
    making = result.ratio(KEN_BURNS, FLOOR) - codec
    making_cpu = result.cpu_ratio(KEN_BURNS, FLOOR) - result.cpu_ratio(CODEC_ONLY, FLOOR)
    verdicts.append(
        f"Target: Ken Burns ≤ {CODEC_ONLY_TARGET}× codec only at 1080x1920 — "
        f"{over_codec:.2f}× ({_verdict(over_codec <= CODEC_ONLY_TARGET)}). Against the floor "
        f"(a still picture at the same settings): codec only {codec:.2f}× (of which "
        f"{read:.2f}× reading the raw frames), Ken Burns {result.ratio(KEN_BURNS, FLOOR):.2f}×: "
        f"making the frames adds {making:+.2f}× the floor by wall time and {making_cpu:+.2f}× "
        "by CPU time (a busy machine moves wall time more); a single swscale resample per "
        f"frame (resample only) adds {resample - 1:.2f}×."
    )
    smooth = shipped.smoothness
    if smooth is not None:
        verdicts.append(
            f"Smoothness: worst step error {smooth.step_error:.3f} px "
            f"({_verdict(smooth.step_error <= SMOOTH_TARGET)} ≤ {SMOOTH_TARGET} px), "
            f"worst path error {smooth.path_error:.3f} px; frame strips: "
            "`bench/zoom-slit-9x16.png` (one row through a moving dot, one line per "
            "frame: previous recipe left, current right; steps show as a staircase) and "
            "`bench/zoom-strip-9x16.png` (8 consecutive frames; previous above)."
        )
    return verdicts


# ------------------------------------------------------------------ one-scene edit


def edit_section(runs: Sequence[EditRun], settings: str, measured: str) -> Section:
    headers = ["front end", "scenes", "edit → new video", "image", "speech", "clip", "join",
               "sound pass", "bound", "within", "sound pass share"]  # fmt: skip
    rows = []
    for run in runs:
        parts = run.parts
        rows.append([run.front, str(run.scenes), _s(run.turnaround), _s(parts.image),
                     _s(parts.speech) if run.speech else "(kept)", _s(parts.clip),
                     _s(parts.join), _s(parts.sound), _s(run.bound),
                     f"{run.ratio:.2f}×",
                     "(reused)" if run.sound_reused else f"{run.sound_share:.0%}"])  # fmt: skip
    verdicts = [
        f"{run.front}: {run.ratio:.2f}× the bound ({_verdict(run.met)}); "
        + ("no sound pass ran (the soundtrack was reused)" if run.sound_reused else
           f"the sound pass is {run.sound_share:.0%} of the turnaround")
        for run in runs
    ]  # fmt: skip
    target = (
        f"Target: a one-scene edit costs at most {EDIT_SLACK:g} × (one image + that scene's "
        "speech + one clip) + the join + the sound pass, each timed on its own in the same "
        "run — " + "; ".join(verdicts) + "."
    )
    edits = runs[0].edits if runs else ()
    markdown = "\n\n".join([
        measured,
        settings,
        _md_table(headers, rows),
        target,
        f"Each front end: {len(edits)} edits one after another, each followed by its parts "
        "timed on their own; every figure is the median over the edits, and *within* the "
        "median of each edit's turnaround over the bound of its own parts. "
        "*CLI*: scene 6 of 12 gets a new image prompt and a new narration, and `reelbot "
        "render` runs again in a process of its own (start-up included). *Discord "
        "Regenerate*: the real bot against the fake Discord renders the same script, then "
        "the requester clicks 🔁 Regenerate on scene 6 (a new seed: a new image, the narration "
        "kept); the clock stops when the new video is posted. *image*, *speech*: one request "
        "to the fakes through the real clients; *clip*: the scene's clip encoded again "
        "(captions and all); *join*: the stream-copy join of the 12 clips; *sound pass*: "
        "loudness over the whole narration (it does not add up scene by scene, so an edit of "
        "one scene pays for all of it; timed uncached: measuring, mixing, encoding the AAC "
        "and adding it to the video; the render makes it as soon as every narration exists, "
        "beside the image, so its share is of the work, not of the critical path). *bound* = "
        f"{EDIT_SLACK:g} × (image + speech + clip) + join + sound pass (Regenerate: no speech). "
        "*(reused)*: the narration was kept, so the new video got the soundtrack cached by "
        "the render before (checked: no soundtrack was made during the edits); the bound "
        "still counts the sound pass, as the target does.",
    ])  # fmt: skip
    return Section("edit", "One-scene edit", _rich_table("One-scene edit", headers, rows),
                   markdown, [target])  # fmt: skip


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


ORDER = ("render", "queue", "encode", "edit", "memory", "speech")


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
