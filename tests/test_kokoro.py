"""Kokoro-FastAPI's word-timed speech (`POST /dev/captioned_speech`) against the loopback fake of
the server, which checks every request against its published contract
(tests/contracts/kokoro-fastapi.openapi.yaml); and `reelbot voices` for each provider."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from pipeline.captions import parse_ass_events, split_phrases
from pipeline.errors import SceneFailed
from pipeline.plan import plan_render
from pipeline.render import render_plan
from pipeline.script import parse_script
from pipeline.tts.wav import repair_wav
from tests.fakes.audio import as_streamed, pcm_wav, speak
from tests.fakes.speech import FakeSpeech

from .conftest import SettingsFactory
from .media import ffprobe
from .test_piper import silences

ROOT = Path(__file__).resolve().parents[1]
# The voices the Kokoro server of these tests has (a selection of the real server's).
VOICES = ("af_heart", "af_bella", "af_sky", "am_adam", "am_michael", "bf_emma", "bm_george",
          "ef_dora", "ff_siwis", "if_sara", "jf_alpha", "pf_dora", "zf_xiaobei")  # fmt: skip

DIALOGUE = """\
# Two voices
## 1
voice: af_bella
Ahoy there, keeper! Is the lamp lit tonight?
## 2
voice: bm_george
It is, and it has been for 200 nights.
## 3
The sea is quiet now.
"""


async def test_kokoro_captions_follow_the_servers_word_times(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(voices=VOICES) as kokoro:
        settings = make_settings(tts={"provider": "kokoro", "base_url": kokoro.base_url,
                                      "speed": 1.25})  # fmt: skip
        plan = plan_render(parse_script(DIALOGUE), settings)
        result = await render_plan(plan, settings, tmp_path / "v.mp4")
    assert kokoro.violations == []
    bodies = [r.json for r in kokoro.requests]
    assert [r.path for r in kokoro.requests] == ["/dev/captioned_speech"] * 3
    assert sorted(b["voice"] for b in bodies) == ["af_bella", "af_heart", "bm_george"]
    for body in bodies:
        assert (body["stream"], body["response_format"], body["return_timestamps"]) == (
            False, "wav", True)  # fmt: skip
        assert body["speed"] == 1.25 and body["model"] == "kokoro"
    assert (
        abs(ffprobe(tmp_path / "v.mp4").duration - sum(s.clip_seconds for s in result.scenes)) < 0.2
    )

    for scene in result.scenes:
        narration = plan.scenes[scene.number - 1].narration
        words, samples = speak(narration, 1.25)
        # The streamed WAV's sizes were repaired: its real length, measured.
        assert scene.audio_seconds == pytest.approx(len(samples) / 24000, abs=0.002)
        assert scene.captions is not None
        cues = parse_ass_events(scene.captions.read_text(encoding="utf-8"))
        phrases = split_phrases(narration, max_words=4, max_chars=24)
        assert [c.text for c in cues] == [p.text for p in phrases]
        onsets = [w["start_time"] for w in words if w["word"][0].isalnum()]
        for cue in cues:  # every cue starts when one of the server's words starts
            assert min(abs(cue.start - t) for t in onsets) < 0.011, cue
        # ...so a cue after a pause starts where the pause ends.
        for _, end in silences(scene.audio, minimum=0.2):
            if end < scene.audio_seconds - 0.05:
                assert min(abs(c.start - end) for c in cues) <= 0.1, (end, cues)


async def test_an_unknown_kokoro_voice_is_named_with_close_ones(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(voices=VOICES) as kokoro:
        settings = make_settings(tts={"provider": "kokoro", "base_url": kokoro.base_url})
        root = kokoro.base_url.removesuffix("/v1")
        script = parse_script("## 1\nvoice: af_bela\nHello.\n")
        with pytest.raises(SceneFailed) as caught:
            await render_plan(plan_render(script, settings), settings, tmp_path / "v.mp4")
    assert (caught.value.scene, caught.value.stage) == (1, "audio")
    assert str(caught.value) == (
        f"scene 1, audio: the Kokoro server at {root} has no voice named 'af_bela' "
        "(close: af_bella); `reelbot voices` lists them"
    )
    assert len(kokoro.requests) == 1 and kokoro.voice_listings == 1


async def test_without_timestamps_the_captions_are_measured(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with FakeSpeech(voices=VOICES, timestamps=False) as kokoro:
        settings = make_settings(tts={"provider": "kokoro", "base_url": kokoro.base_url})
        plan = plan_render(parse_script("## 1\nOne, two, three, four, five six seven."), settings)
        result = await render_plan(plan, settings, tmp_path / "v.mp4")
    assert result.scenes[0].captions is not None
    cues = parse_ass_events(result.scenes[0].captions.read_text(encoding="utf-8"))
    # Measured as a speech server's audio: from the first sound to the last one (the fake's
    # narration ends with 0.54 s of silence), shared among the phrases.
    assert len(cues) == 3 and cues[0].start == 0.0
    assert cues[-1].end == pytest.approx(result.scenes[0].audio_seconds - 0.54, abs=0.02)


async def test_the_fake_refuses_a_request_off_the_contract() -> None:
    import httpx

    async with FakeSpeech(voices=VOICES) as kokoro, httpx.AsyncClient() as client:
        url = kokoro.base_url.removesuffix("/v1") + "/dev/captioned_speech"
        bad = await client.post(url, json={"input": 5, "speed": 9, "stream": False, "colour": 1})
        good = await client.post(url, json={"input": "Hi.", "stream": False,
                                            "response_format": "wav"})  # fmt: skip
        refused, kokoro.violations = kokoro.violations, []  # refused on purpose
    assert bad.status_code == 422 and good.status_code == 200
    assert any("5 is not of type 'string'" in e for e in refused)
    assert any("9 is greater than the maximum of 4.0" in e for e in refused)
    assert any("'colour' was unexpected" in e for e in refused)


def test_a_streamed_wav_gets_its_real_sizes() -> None:
    _, samples = speak("Hello there.", 1.0)
    fixed = repair_wav(as_streamed(pcm_wav(samples)))
    assert fixed[4:8] == (len(fixed) - 8).to_bytes(4, "little")
    assert fixed[40:44] == (len(samples) * 2).to_bytes(4, "little")
    with pytest.raises(ValueError):
        repair_wav(b"ID3 an mp3")


# ---------------------------------------------------------------- reelbot voices


async def reelbot_voices(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REELBOT_")}
    clean.update({"REELBOT_STORAGE__DATA_DIR": str(tmp_path), "COLUMNS": "200", **env})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.cli", "voices", *args, cwd=ROOT, env=clean,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_reelbot_voices_lists_each_providers_voices(tmp_path: Path) -> None:
    code, out, err = await reelbot_voices(tmp_path)  # auto: Piper
    assert code == 0, err
    assert "piper voices" in out and "en_US-joe-medium (default)" in out and "1 of 1" in err

    code, out, err = await reelbot_voices(tmp_path, "fr", REELBOT_TTS__PROVIDER="espeak")
    assert code == 0 and "fr-fr" in out and "French (France) (roa/fr)" in out

    async with FakeSpeech(voices=VOICES) as kokoro:
        code, out, err = await reelbot_voices(tmp_path, "bf_", REELBOT_TTS__PROVIDER="kokoro",
                                              REELBOT_TTS__BASE_URL=kokoro.base_url)  # fmt: skip
    assert code == 0, err
    assert "bf_emma" in out and "af_bella" not in out and "1 of 13" in err
    assert kokoro.voice_listings == 1

    async with FakeSpeech() as speech:
        code, out, err = await reelbot_voices(tmp_path, REELBOT_TTS__PROVIDER="openai",
                                              REELBOT_TTS__BASE_URL=speech.base_url)  # fmt: skip
    assert code == 0 and "alloy" in out and "cedar" in out and "13 of 13" in err
    assert speech.requests == []  # a fixed list: the server is not asked

    code, out, err = await reelbot_voices(tmp_path, REELBOT_TTS__PROVIDER="kokoro",
                                          REELBOT_TTS__BASE_URL="http://127.0.0.1:9/v1",
                                          REELBOT_TTS__MAX_ATTEMPTS="1")  # fmt: skip
    assert code == 1 and "could not be reached" in err and "Traceback" not in err
