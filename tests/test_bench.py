"""Smoke tests of bench/ (the benchmarks themselves run with `make bench`, not here)."""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bench.edit import Edit, EditRun, Parts, edited_script
from bench.encode import (
    centroid,
    moviepy_argv,
    path_errors,
    previous_clip_argv,
    recipe2_argv,
    resample_only_argv,
    track_dots,
)
from bench.fakes import Latencies
from bench.measure import process_tree, rss_bytes, run_timed
from bench.media import dot_chart, make_script, photo
from bench.quality import render_reference, ssim
from bench.queue import keys_run, queue_run
from bench.render import render_once, summarize
from bench.report import Section, edit_section, speech_section, write_results
from bench.speech import RenderRace, speech_rates
from pipeline.aspect import Size
from pipeline.config import VideoConfig
from pipeline.events import JobDone, JobStarted, ProgressEvent, SceneEvent, Stage, Status
from pipeline.script import parse_script
from pipeline.video import ClipSpec, clip_argv, still_argv
from tests.fakes.audio import make_wav
from tests.media import packet_count


def _event(t: float, scene: int, stage: Stage, status: Status) -> SceneEvent:
    return SceneEvent(t, scene, stage, status)


def test_the_lower_bound_comes_from_the_events() -> None:
    a, i, c, j = Stage.AUDIO, Stage.IMAGE, Stage.CLIP, Stage.JOIN
    started, done = Status.STARTED, Status.DONE
    events: list[ProgressEvent] = [
        JobStarted(0.0, "t", 2),
        _event(0.0, 1, a, started), _event(0.0, 2, a, started),
        _event(0.0, 1, i, started), _event(0.5, 1, a, done), _event(0.9, 2, a, done),
        _event(1.0, 1, i, done), _event(1.0, 2, i, started), _event(1.0, 1, c, started),
        _event(1.8, 1, c, done), _event(2.0, 2, i, done), _event(2.1, 2, c, started),
        _event(3.0, 2, c, done), _event(3.0, 0, j, started), _event(3.5, 0, j, done),
        JobDone(3.6, Path("out.mp4"), 4.0),
    ]  # fmt: skip
    run = summarize(events, aspect="9:16", scenes=2, image_latency=1.0, sequential=False)
    assert run.makespan == 3.6 and run.tts_finish == 0.9
    assert math.isclose(run.last_clip, 0.9) and math.isclose(run.join, 0.5)
    assert math.isclose(run.lower_bound, 2.0 + 0.9 + 0.5)  # images, then scene 2's clip, join
    assert math.isclose(run.efficiency, 3.4 / 3.6)


def test_path_errors_see_steps_and_ignore_a_constant_offset() -> None:
    exact = [10 + 0.3 * n for n in range(30)]
    smooth = path_errors([x + 0.25 for x in exact], exact)
    assert smooth.step_error < 1e-9 and smooth.path_error < 1e-9
    stepped = path_errors([math.floor(x) for x in exact], exact)  # whole pixels only
    assert stepped.step_error > 0.6 and stepped.path_error > 0.4


def test_a_centroid_is_found_to_a_hundredth_of_a_pixel() -> None:
    width, height, cx, cy = 64, 48, 30.37, 20.81  # centre, with pixel centres at +0.5
    frame = bytes(
        min(255, 40 + round(200 * math.exp(-((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2) / 8)))
        for y in range(height)
        for x in range(width)
    )
    x, y = centroid(frame, width, 31.0, 20.0, reach=10, background=45)
    assert abs(x - cx) < 0.02 and abs(y - cy) < 0.02


def test_the_zoom_is_smooth_and_the_previous_one_was_not(tmp_path: Path) -> None:
    picture, frame = Size(144, 256), Size(270, 480)
    chart = dot_chart(*picture, radius=0.01)  # dots ~3 px across: big enough to centroid
    chart.image.save(tmp_path / "chart.png")
    (tmp_path / "a.wav").write_bytes(make_wav(1.6))
    spec = ClipSpec(tmp_path / "chart.png", tmp_path / "a.wav", 1.6, frame, VideoConfig(crf=1))
    results = {}
    for name, build in (("now", clip_argv), ("previous", previous_clip_argv)):
        subprocess.run(build(spec, tmp_path / f"{name}.mp4"), check=True, timeout=120)
        results[name] = track_dots(tmp_path / f"{name}.mp4", frame, picture, chart.dots, 1.12)
    assert results["now"].step_error < 0.1, results
    assert results["previous"].step_error > 0.3, results


def _grey_frames(video: Path, frame: Size) -> list[bytes]:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(video), "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True,
                         timeout=60).stdout  # fmt: skip
    size = frame.width * frame.height
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def _mean_difference(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def test_resample_only_makes_every_frame_but_no_motion(tmp_path: Path) -> None:
    """The bound's frame-making row: a full clip whose frames are all alike (up to crf 1's
    noise), where the Ken Burns clip of the same picture moves."""
    picture, frame = Size(144, 256), Size(270, 480)
    photo(*picture, seed=3).save(tmp_path / "photo.png")
    (tmp_path / "a.wav").write_bytes(make_wav(1.0))
    spec = ClipSpec(tmp_path / "photo.png", tmp_path / "a.wav", 1.0, frame, VideoConfig(crf=1))
    for name, build in (("still", resample_only_argv), ("zoom", clip_argv)):
        subprocess.run(build(spec, tmp_path / f"{name}.mp4"), check=True, timeout=120)
    still, zoom = (
        _grey_frames(tmp_path / "still.mp4", frame),
        _grey_frames(tmp_path / "zoom.mp4", frame),
    )
    assert len(still) == len(zoom) == spec.frames
    assert max(_mean_difference(still[0], f) for f in still) < 0.5
    assert _mean_difference(zoom[0], zoom[-1]) > 3


def test_the_process_tree_and_its_memory() -> None:
    child = subprocess.Popen(["sleep", "5"])
    try:
        tree = process_tree(os.getpid())
        assert tree[os.getpid()] and tree[child.pid] == "sleep"
        assert rss_bytes(os.getpid()) > 10 * 2**20
    finally:
        child.kill()
        child.wait()
    timing = run_timed(["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
    assert timing.wall > 0 and timing.cpu > 0


def test_generated_scripts_have_the_scenes_asked_for() -> None:
    script = parse_script(make_script(12, chars=(35, 65)))
    assert len(script.scenes) == 12
    assert all(30 <= len(s.narration) <= 70 for s in script.scenes)
    assert len({s.image_prompt for s in script.scenes}) == 12
    assert len({s.narration for s in parse_script(make_script(50, chars=(5, 12))).scenes}) == 50


def test_results_keep_the_sections_not_rerun(tmp_path: Path) -> None:
    from rich.table import Table

    out = tmp_path / "results.md"
    write_results(out, [Section("render", "R", Table(), "render one", []),
                        Section("memory", "M", Table(), "memory one", [])])  # fmt: skip
    write_results(out, [Section("encode", "E", Table(), "encode two", []),
                        Section("render", "R", Table(), "render two", [])])  # fmt: skip
    text = out.read_text()
    assert "render two" in text and "render one" not in text
    assert text.index("render two") < text.index("encode two") < text.index("memory one")


async def test_a_render_run_is_measured(tmp_path: Path) -> None:
    # Two short scenes against the fakes, with real ffmpeg.
    run = await render_once("16:9", 2, sequential=False, latencies=Latencies(0.2, 0.05, 0.0),
                            chars=(5, 10), workdir=tmp_path)  # fmt: skip
    assert run.scenes == 2 and run.images == pytest.approx(0.4)
    assert 0 < run.lower_bound <= run.makespan
    assert 0 < run.efficiency <= 1


async def test_speech_is_measured_for_espeak_and_piper(tmp_path: Path) -> None:
    rates = await speech_rates(2, (20, 40), tmp_path)
    assert [r.provider for r in rates] == ["espeak-ng", "Piper (joe, medium)"]
    for rate in rates:
        assert rate.scenes == 2 and rate.audio > 1 and rate.wall > 0 and rate.rate > 0
        assert rate.cpu > 0 and rate.cpu_rate > 0
    espeak, piper = rates
    assert espeak.peak_rss == 0 and espeak.load == 0
    assert piper.load > 0 and piper.peak_rss > 50 * 2**20  # the model is in that process
    race = RenderRace(12, 3.0, last_narration=20.0, last_image_started=33.1, last_image=36.2,
                      makespan=41.0)  # fmt: skip
    section = speech_section(rates, race, "Settings: test.", "Measured now.")
    assert race.ahead and "every narration done at 20.0 s" in section.markdown
    assert "Piper (joe, medium)" in section.markdown and section.verdicts
    late = speech_section(rates, RenderRace(12, 3.0, 40.0, 33.1, 36.2, 45.0), "", "")
    assert "after the last image" in late.markdown


def test_the_exact_zoom_is_what_ssim_compares_against(tmp_path: Path) -> None:
    """The reference follows the zoom: the clip recipe (at crf 1) scores near 1 against it,
    the same picture without the zoom (the floor) clearly less."""
    picture, frame = Size(144, 256), Size(270, 480)
    photo(*picture, seed=5).save(tmp_path / "photo.png")
    (tmp_path / "a.wav").write_bytes(make_wav(1.0))
    spec = ClipSpec(tmp_path / "photo.png", tmp_path / "a.wav", 1.0, frame, VideoConfig(crf=1))
    reference = tmp_path / "exact.mkv"
    render_reference(spec.image, frame, spec.frames, spec.config.zoom, spec.config.fps, reference)
    assert packet_count(reference) == spec.frames
    scores = {}
    for name, build in (("zoom", clip_argv), ("still", still_argv), ("recipe 2", recipe2_argv)):
        subprocess.run(build(spec, tmp_path / f"{name}.mp4"), check=True, timeout=120)
        scores[name] = ssim(tmp_path / f"{name}.mp4", reference)
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert scores["zoom"] > 0.97 and scores["recipe 2"] > 0.97, scores
    assert scores["still"] < scores["zoom"] - 0.02, scores


def test_recipe_2_has_the_clips_inputs_and_output_options(tmp_path: Path) -> None:
    photo(576, 1024, seed=1).save(tmp_path / "p.png")
    spec = ClipSpec(tmp_path / "p.png", tmp_path / "a.wav", 1.0, Size(1080, 1920), VideoConfig())
    before, now = recipe2_argv(spec, tmp_path / "a.mp4"), clip_argv(spec, tmp_path / "a.mp4")
    graph = before.index("-filter_complex") + 1
    assert "perspective" in before[graph] and "zoompan" in before[graph]
    assert "perspective" not in now[graph] and "zoompan" not in now[graph]
    # The same inputs and the same output options (the codec's and the clip's).
    assert before[:graph] == now[:graph]
    assert before[before.index("-f") :] == now[now.index("-f") :]


def test_the_moviepy_row_runs_its_own_script(tmp_path: Path) -> None:
    spec = ClipSpec(tmp_path / "p.png", tmp_path / "a.wav", 7.7, Size(1080, 1920), VideoConfig())
    argv = moviepy_argv("/opt/py/bin/python")(spec, tmp_path / "m.mp4")
    assert argv[0] == "/opt/py/bin/python" and argv[1].endswith("bench/moviepy_clip.py")
    assert argv[2:] == [str(spec.image), str(spec.audio), "8.100000", "1080", "1920", "1.12",
                        str(tmp_path / "m.mp4")]  # fmt: skip


def test_an_edit_changes_one_scene_and_the_bound_adds_up() -> None:
    before = make_script(12, chars=(25, 45))
    after = edited_script(before, 6)
    old, new = parse_script(before).scenes, parse_script(after).scenes
    changed = [n for n, (a, b) in enumerate(zip(old, new, strict=True), 1) if a != b]
    assert changed == [6]
    assert old[5].image_prompt != new[5].image_prompt and old[5].narration != new[5].narration
    assert edited_script(before, 6, 1) != after  # every edit of a run is new to the cache
    parts = Parts(image=3.0, speech=0.5, clip=2.0, join=0.4, sound=1.5)
    slow = Parts(image=3.0, speech=0.5, clip=4.0, join=0.4, sound=1.5)
    cli = EditRun("CLI", 12, (Edit(7.5, parts), Edit(7.6, parts), Edit(9.0, slow)), speech=True)
    assert cli.turnaround == 7.6 and cli.parts == parts  # medians
    assert cli.bound == pytest.approx(1.1 * 5.5 + 0.4 + 1.5) and cli.met
    assert cli.ratio == pytest.approx(7.5 / (1.1 * 5.5 + 1.9))  # per edit, against its parts
    regen = EditRun("Discord Regenerate", 12, (Edit(7.5, parts),), speech=False)
    assert regen.bound == pytest.approx(1.1 * 5.0 + 1.9) and not regen.met
    assert regen.sound_share == pytest.approx(1.5 / 7.5)
    reused = replace(regen, sound_reused=True)
    assert reused.sound_share == 0 and reused.bound == regen.bound  # the bound still counts it
    section = edit_section([cli, reused], "settings", "measured")
    assert "| (reused) |" in section.markdown and "| 20% |" in section.markdown
    assert "no sound pass ran" in section.markdown


async def test_the_queue_and_two_keys_are_measured(tmp_path: Path) -> None:
    # Two one-scene jobs through the bot's job runner, two at once; then one render with two
    # keys. Real ffmpeg, the fakes, tiny latencies: the code runs, the figures add up.
    latencies = Latencies(0.2, 0.05, 0.0)
    run = await queue_run(2, jobs=2, scenes=1, latencies=latencies, chars=(5, 10),
                          workdir=tmp_path, aspect="16:9")  # fmt: skip
    assert run.requests == 2 and run.overlaps == 0
    assert run.images == pytest.approx(0.4) and 0 < run.efficiency < 1
    assert 0 < run.tail <= run.makespan and len(run.finished) == 2
    keyed = await keys_run(2, scenes=2, latencies=latencies, chars=(5, 10), workdir=tmp_path,
                           aspect="16:9")  # fmt: skip
    assert keyed.per_key == (1, 1)  # one image on each key
    assert 0 < keyed.images_span <= keyed.makespan
