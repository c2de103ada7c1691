"""Speech servers as published (OpenAI, Kokoro-FastAPI): the voice each provider defaults to,
instructions only where a model takes them, the input limit said when the script is read, and
streamed WAV measured by its bytes, not its header."""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import SceneFailed, ScriptError
from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.tts import default_voice
from pipeline.tts.openai import takes_instructions
from pipeline.tts.wav import repair_wav
from tests.fakes.audio import make_wav, streamed_wav, wav_duration
from tests.fakes.speech import FakeSpeech

from .conftest import SettingsFactory

ONE = "# One\n## 1\nThe lamp is lit.\n"
TWO = "# Two\n## 1\nThe lamp is lit.\n## 2\nThe boats come home, one after another.\n"


def speech_settings(make_settings: SettingsFactory, speech: FakeSpeech, **tts: Any) -> Any:
    return make_settings(
        tts={"provider": "openai", "base_url": speech.base_url, "max_attempts": 1, **tts},
        video={"fps": 10, "preset": "ultrafast"}, captions={"enabled": False},
        sound={"normalize": False},
    )  # fmt: skip


async def render(settings: Any, out: Path, text: str = ONE) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    await render_plan(plan_render(parse_script(text), settings), settings, out,
                      on_event=events.append)  # fmt: skip
    return events


# ------------------------------------------------------------ voices


def test_the_voice_defaults_per_provider(make_settings: SettingsFactory) -> None:
    assert default_voice(make_settings(tts={"provider": "espeak"})) == "en-us"
    assert default_voice(make_settings(tts={"provider": "openai"})) == "alloy"
    assert default_voice(make_settings(tts={"provider": "kokoro"})) == "af_heart"
    voice = make_settings(tts={"provider": "openai", "voice": "af_bella"})
    assert default_voice(voice) == "af_bella"


@pytest.mark.parametrize("flavour", ["kokoro", "openai"])
async def test_a_server_is_sent_its_own_default_voice(
    make_settings: SettingsFactory, tmp_path: Path, flavour: str
) -> None:
    model = "kokoro" if flavour == "kokoro" else "tts-1"
    async with FakeSpeech(flavour=flavour) as speech:  # type: ignore[arg-type]
        await render(speech_settings(make_settings, speech, model=model), tmp_path / "v.mp4")
    assert [r.json["voice"] for r in speech.requests] == ["alloy"]


async def test_an_espeak_voice_is_never_sent_to_a_server(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech() as speech:
        settings = speech_settings(make_settings, speech, voice="en-us")
        with pytest.raises(SceneFailed) as caught:
            await render(settings, tmp_path / "v.mp4")
    assert speech.requests == []
    assert caught.value.stage == "audio"
    assert "'en-us' is an espeak-ng voice" in str(caught.value)
    assert "e.g. alloy" in str(caught.value)


# ------------------------------------------------------------ instructions


@pytest.mark.parametrize(
    ("flavour", "model", "sent"),
    [("openai", "gpt-4o-mini-tts", True), ("openai", "tts-1", False),
     ("openai", "tts-1-hd", False), ("kokoro", "kokoro", False)],
)  # fmt: skip
async def test_instructions_go_only_to_models_that_take_them(
    make_settings: SettingsFactory, tmp_path: Path, flavour: str, model: str, sent: bool
) -> None:
    assert takes_instructions(model) is sent
    async with FakeSpeech(flavour=flavour) as speech:  # type: ignore[arg-type]
        settings = speech_settings(make_settings, speech, model=model,
                                   instructions="Speak like a lighthouse keeper.")  # fmt: skip
        await render(settings, tmp_path / "v.mp4")
    [request] = speech.requests
    assert request.status == 200
    if sent:
        assert request.json["instructions"] == "Speak like a lighthouse keeper."
    else:
        assert "instructions" not in request.json


# ------------------------------------------------------------ the input limit


def test_a_scene_over_the_servers_input_limit_is_refused_when_the_script_is_read(
    make_settings: SettingsFactory,
) -> None:
    long = "A sentence of narration. " * 200  # 4,999 characters once stripped
    text = f"# Long\n## 1\nShort.\n\n## 2\n{long}\n"
    limits = {"max_chars_per_scene": 6000}
    server = make_settings(tts={"provider": "openai"}, limits=limits)
    script = parse_script(text, limits=server.limits)
    with pytest.raises(ScriptError) as caught:
        plan_render(script, server)
    assert caught.value.scene == 2 and caught.value.line == 5  # the scene's heading
    assert "takes at most 4,096 in one request" in str(caught.value)
    assert str(caught.value).startswith("line 5 (scene 2): the narration is 4,999 characters")
    plan_render(script, make_settings(limits=limits))  # espeak-ng has no such limit
    bigger = make_settings(tts={"provider": "openai", "max_input": 5000}, limits=limits)
    plan_render(script, bigger)


# ------------------------------------------------------------ streamed WAV


async def test_streamed_wav_is_measured_by_its_bytes(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(seconds_per_char=0.05) as speech:
        events = await render(speech_settings(make_settings, speech), tmp_path / "v.mp4", TWO)
    assert speech.streamed  # the fake sent 0xFFFFFFFF sizes, chunk by chunk
    done = {
        e.scene: e
        for e in events
        if isinstance(e, SceneEvent) and (e.stage, e.status) == (Stage.AUDIO, Status.DONE)
    }
    by_text = {r.json["input"]: r.audio_seconds for r in speech.requests}
    for number, scene in enumerate(parse_script(TWO).scenes, start=1):
        expected = by_text[scene.narration]
        assert expected is not None
        assert done[number].seconds == pytest.approx(expected, abs=0.01)
        path = done[number].path
        assert path is not None
        with wave.open(str(path)) as written:  # a plain reader sees the true length too
            assert written.getnframes() / written.getframerate() == pytest.approx(expected)


def test_true_sizes_are_written_into_a_streamed_header() -> None:
    streamed = streamed_wav(1.5)
    fixed = repair_wav(streamed)
    assert struct.unpack_from("<I", fixed, 4)[0] == len(fixed) - 8
    assert struct.unpack_from("<I", fixed, 40)[0] == len(fixed) - 44
    assert fixed == make_wav(1.5)
    assert wav_duration(fixed) == wav_duration(streamed) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="not a WAV file"):
        repair_wav(b"ID3\x04mp3 bytes")
