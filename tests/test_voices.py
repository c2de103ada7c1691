"""espeak-ng voices as the `espeak-ng` command takes them: by name, by voice file, by language;
rendered for real in seven languages, and refused (with close voices that work) when unknown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.captions import parse_ass_events
from pipeline.errors import SceneFailed, TTSError
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.tts.espeak import EspeakTTS, parse_voice_listing
from tests.fakes.speech import FakeSpeech

from .conftest import SettingsFactory
from .media import ffprobe

# One scene per language, each in its own voice (as a script names it).
SEVEN = {
    "en-gb": "The kettle sang, and the rain kept falling on the harbour.",
    "fr": "Le phare veille sur la mer, et les bateaux rentrent au port.",
    "de": "Der Leuchtturm wacht über das Meer, und die Boote kehren heim.",
    "es": "El faro vigila el mar, y los barcos vuelven a casa.",
    "zh": "灯塔守望着大海，渔船平安回家。",
    "pt-br": "O farol vigia o mar, e os barcos voltam para casa.",
    "it": "Il faro veglia sul mare, e le barche tornano a casa.",
}


def listed() -> str:
    return subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True,
                          check=True, timeout=30).stdout  # fmt: skip


async def test_every_listed_voice_resolves_by_language_file_and_name() -> None:
    voices = parse_voice_listing(listed())
    assert len(voices) > 50  # the listing was read, not skipped
    spellings = sorted({s for v in voices for s in v.spellings()})
    # The names as the listing prints them too ("English_(Great_Britain)").
    spellings += [v.name.replace(" ", "_") for v in voices]
    found = await EspeakTTS().resolves(spellings)
    assert [s for s, ok in zip(spellings, found, strict=True) if not ok] == []
    for expected in ("en-gb", "fr", "zh", "en", "pt-br", "fr-fr", "gmw/en-GB-x-rp", "en-us+f3"):
        assert expected in spellings or "+" in expected
    assert await EspeakTTS().resolves(["en-gb", "fr", "zh", "en", "en-us+f3"]) == [True] * 5


async def test_the_issue_voices_are_accepted_and_nonsense_is_not() -> None:
    tts = EspeakTTS()
    good = ["en-gb", "fr", "fr-fr", "zh", "en", "pt-br", "gmw/en-GB-x-rp", "en-gb+f3", "EN-GB"]
    assert await tts.resolves(good) == [True] * len(good)
    bad = ["xx-nope", "", "Alex", "!v/Alex", "en" * 30, "-v"]  # "Alex" is a variant, not a voice
    assert await tts.resolves(bad) == [False] * len(bad)


@pytest.mark.parametrize("typo", ["engb", "frnch", "portugese", "gmw/en-GB-x-rq", "zhh"])
async def test_an_unknown_voice_is_refused_with_close_voices_that_work(typo: str) -> None:
    tts = EspeakTTS()
    with pytest.raises(TTSError) as caught:
        await tts.check_voice(typo)
    message = str(caught.value)
    assert message.startswith(f"espeak-ng has no voice named {typo!r}")
    assert "`reelbot voices` lists them all" in message
    assert "(close: " in message
    suggested = message.split("(close: ", 1)[1].split(")", 1)[0].split(", ")
    assert 1 <= len(suggested) <= 4
    assert await tts.resolves(suggested) == [True] * len(suggested)  # never one it refuses


async def test_seven_languages_render_with_word_timed_captions(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    script = "# Seven voices\n" + "".join(
        f"\n## {voice}\nvoice: {voice}\n{text}\n" for voice, text in SEVEN.items()
    )
    settings = make_settings(video={"fps": 10, "pad_seconds": 0.2},
                             sound={"normalize": False})  # fmt: skip
    plan = plan_render(parse_script(script), settings)
    assert plan.captions and [s.voice for s in plan.scenes] == list(SEVEN)
    result = await render_plan(plan, settings, tmp_path / "seven.mp4")

    probe = ffprobe(tmp_path / "seven.mp4")
    assert probe.stream("video")["codec_name"] == "h264"
    assert probe.stream("audio")["codec_name"] == "aac"
    expected = sum(s.clip_seconds for s in result.scenes)
    assert abs(probe.duration - expected) < 0.1 * len(SEVEN)
    tts = EspeakTTS()
    for scene, (voice, text) in zip(result.scenes, SEVEN.items(), strict=True):
        assert 1.5 < scene.audio_seconds < 12, scene
        assert scene.captions is not None
        cues = parse_ass_events(scene.captions.read_text(encoding="utf-8"))
        assert "".join(c.text for c in cues).replace(" ", "") == text.replace(" ", "")
        # The cues follow the helper's word events in that voice (not a proportional guess).
        again = tmp_path / f"{voice.replace('/', '_')}.wav"
        words = await tts.synthesize_timed(text, voice=voice, speed=1.0, out=again)
        assert words and again.read_bytes()[44:] == scene.audio.read_bytes()[44:]
        onsets = sorted(w.seconds for w in words)
        assert len(cues) >= 2
        for cue in cues:
            assert min(abs(cue.start - t) for t in onsets) < 0.011, (voice, cue)
    # Each language sounds different: no two narrations share their audio.
    assert len({s.audio.read_bytes() for s in result.scenes}) == len(SEVEN)


async def test_a_script_with_an_unknown_voice_fails_on_that_scene(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    script = "## 1\nvoice: fr\nBonjour.\n## 2\nvoice: frnch\nBonjour encore.\n"
    settings = make_settings()
    with pytest.raises(SceneFailed) as caught:
        await render_plan(plan_render(parse_script(script), settings), settings, tmp_path / "x.mp4")
    assert (caught.value.scene, caught.value.stage) == (2, "audio")
    assert "no voice named 'frnch'" in str(caught.value) and "close: " in str(caught.value)


async def test_a_speech_server_gets_each_scenes_voice(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    script = ("voice: nova\n## 1\nvoice: onyx\nThe keeper speaks.\n"
              "## 2\nvoice: shimmer\nThe gull answers.\n## 3\nThe narrator ends it.\n")  # fmt: skip
    async with FakeSpeech() as speech:
        settings = make_settings(tts={"provider": "openai", "base_url": speech.base_url})
        plan = plan_render(parse_script(script), settings)
        await render_plan(plan, settings, tmp_path / "v.mp4")
    voices = {r.json["input"]: r.json["voice"] for r in speech.requests}
    assert voices == {"The keeper speaks.": "onyx", "The gull answers.": "shimmer",
                      "The narrator ends it.": "nova"}  # fmt: skip
    assert ffprobe(tmp_path / "v.mp4").duration > 3
