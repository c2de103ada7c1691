"""The sound pass: background music ducked under the narration, loudness normalised.

Real espeak-ng and ffmpeg. The music is made here with ffmpeg: a 13 kHz tone, above
everything espeak-ng can produce (its audio is sampled at 22.05 kHz), so a high-pass filter
hears the music alone even while the narration speaks.
"""

from __future__ import annotations

import math
import re
import subprocess
from array import array
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from pipeline.errors import ConfigError
from pipeline.events import ProgressEvent, SceneEvent, Stage, Status
from pipeline.plan import plan_render
from pipeline.render import RenderResult, render_plan
from pipeline.script import parse_script
from pipeline.soundtrack import pick_music
from tests.fakes.together import FakeTogether

from .conftest import SettingsFactory
from .media import ffprobe, packet_count

RATE = 48000
SCRIPT = """\
# Sound
## 1
For forty years, Elias climbed the same two hundred steps to the lamp.
## 2
Every night he trimmed the wick and polished the glass.
"""


def make_music(path: Path, seconds: float = 1.5) -> Path:
    """A short track (it has to be looped to fill the video): a 13 kHz tone."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=f=13000:d={seconds}",
         "-af", "volume=0.3", "-ar", "44100", "-ac", "2", "-c:a", "libvorbis", "-y", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def integrated_loudness(path: Path) -> float:
    """EBU R128 integrated loudness (LUFS), measured by ffmpeg's ebur128 filter."""
    log = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a",
         "-af", "ebur128", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stderr  # fmt: skip
    summary = log[log.rindex("Summary:") :]
    found = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    assert found, summary
    return float(found.group(1))


def samples(path: Path, *filters: str) -> array[float]:
    """The audio as mono float samples at 48 kHz, after `filters`."""
    graph = ",".join([*filters, f"aresample={RATE}", "pan=mono|c0=0.5*c0+0.5*c1"])
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-af", graph,
         "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return array("f", raw)


def rms_db(data: array[float], start: float, end: float) -> float:
    window = data[round(start * RATE) : round(end * RATE)]
    assert len(window) >= RATE // 20
    mean = sum(x * x for x in window) / len(window)
    return 10 * math.log10(mean) if mean > 0 else -200.0


async def render(settings: object, out: Path, **plan_options: object) -> RenderResult:
    plan = plan_render(parse_script(SCRIPT), settings, **plan_options)  # type: ignore[arg-type]
    return await render_plan(plan, settings, out)  # type: ignore[arg-type]


async def test_music_is_ducked_under_the_voice_and_the_loudness_is_on_target(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    music = make_music(tmp_path / "tone.ogg")
    settings = make_settings(
        video={"pad_seconds": 2.5},  # long pauses after each scene: the music alone
        sound={"music": str(music), "music_fade": 0.5},
        captions={"enabled": False},
    )
    out = tmp_path / "v.mp4"
    result = await render(settings, out)

    probe = ffprobe(out)
    clips = sum(s.clip_seconds for s in result.scenes)
    assert abs(probe.duration - clips) < 0.05
    assert abs(float(probe.stream("audio")["duration"]) - clips) < 0.05
    assert probe.stream("audio")["sample_rate"] == "48000"
    # The video was not touched: every packet of every clip, copied.
    assert packet_count(out) == sum(packet_count(s.clip) for s in result.scenes)

    # EBU R128 integrated loudness of the whole video, within 1 LU of the target.
    assert abs(integrated_loudness(out) - settings.sound.loudness_target) <= 1.0

    music_only = samples(out, *["highpass=f=12000"] * 3)
    everything = samples(out)
    first = result.scenes[0]
    speaking = (0.3, first.audio_seconds - 0.3)  # scene 1's narration
    pause = (first.audio_seconds + 1.0, first.clip_seconds - 0.2)  # its pad: music alone
    second_pause = (  # scene 2's pad, long after the 1.5 s track ended: it was looped
        first.clip_seconds + result.scenes[1].audio_seconds + 0.8,
        clips - 0.7,  # before the fade-out
    )
    music_speaking = rms_db(music_only, *speaking)
    music_pause = rms_db(music_only, *pause)
    # Present under the voice...
    assert music_speaking > -55, music_speaking
    # ...and quieter while the narration speaks: ducked by the sidechain compressor.
    assert music_pause - music_speaking >= 6, (music_pause, music_speaking)
    # (loudnorm's dynamic gain may differ a little between the two moments)
    assert abs(rms_db(music_only, *second_pause) - music_pause) < 4
    # The narration itself is there, well above the music.
    assert rms_db(everything, *speaking) - music_speaking > 10
    # And the music fades out at the very end.
    assert rms_db(music_only, clips - 0.12, clips - 0.02) < music_pause - 10


@pytest.mark.parametrize("target", [-16.0, -23.0])
async def test_loudness_is_normalised_without_music(
    make_settings: SettingsFactory, tmp_path: Path, target: float
) -> None:
    settings = make_settings(sound={"loudness_target": target}, captions={"enabled": False})
    out = tmp_path / "v.mp4"
    result = await render(settings, out)
    assert abs(integrated_loudness(out) - target) <= 1.0
    # The sound pass rebuilt the audio, the video is the clips' own packets.
    assert packet_count(out) == sum(packet_count(s.clip) for s in result.scenes)
    peak = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(out), "-af", "ebur128=peak=true",
         "-f", "null", "-"], capture_output=True, text=True, check=True, timeout=120,
    ).stderr  # fmt: skip
    true_peak = float(re.findall(r"Peak:\s+(-?[\d.]+) dBFS", peak)[-1])
    assert true_peak <= settings.sound.true_peak + 0.5


async def test_without_music_or_normalising_the_join_is_the_whole_story(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(sound={"normalize": False}, captions={"enabled": False})
    out = tmp_path / "v.mp4"
    result = await render(settings, out)
    # No sound pass: the audio packets are the clips' own too.
    assert packet_count(out, "a:0") == sum(packet_count(s.clip, "a:0") for s in result.scenes)


async def test_music_from_the_command_or_bot_beats_the_config(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(sound={"music": str(tmp_path / "missing.mp3")})
    with pytest.raises(ConfigError, match=r"missing\.mp3 does not exist"):
        plan_render(parse_script(SCRIPT), settings)
    chosen = make_music(tmp_path / "chosen.ogg")
    plan = plan_render(parse_script(SCRIPT), settings, music=chosen)
    assert plan.music == chosen.resolve()


def test_a_music_folder_gives_each_script_its_track(tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("a.mp3", "b.ogg", "c.flac", "notes.txt"):
        (folder / name).write_bytes(b"x")
    picks = {pick_music(folder, f"script {n}").name for n in range(40)}
    assert picks == {"a.mp3", "b.ogg", "c.flac"}
    assert pick_music(folder, "same") == pick_music(folder, "same")
    assert pick_music(folder / "a.mp3", "anything").name == "a.mp3"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="holds no audio files"):
        pick_music(empty, "x")


# ---------------------------------------------------------------- crossfades

THREE = """\
## 1
image: a red door
The first scene is short.
## 2
The second scene says a little more than the first one did.
## 3
image: a quiet harbour at night
And the third one ends it.
"""


def packet_hashes(path: Path) -> list[str]:
    """An MD5 of every video packet as stored (stream copy, nothing decoded). The concat
    demuxer repeats the parameter sets (SPS, PPS) inside keyframes; they are left out."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy",
         "-bsf:v", "filter_units=remove_types=7|8", "-f", "framemd5", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line[:1].isdigit()]


def frame_at(path: Path, index: int, fps: int, out: Path) -> Image.Image:
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})",
                    "-frames:v", "1", "-y", str(out)], check=True, timeout=120)  # fmt: skip
    return Image.open(out).convert("L")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    data = ImageChops.difference(a, b).tobytes()
    return sum(data) / len(data)


async def test_crossfades_reencode_only_the_seams(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(video={"crossfade": 0.5}, captions={"enabled": False})
    out = tmp_path / "x.mp4"
    result = await render_plan(plan_render(parse_script(THREE), settings), settings, out)
    fps, fade = 30, 15
    frames = [round(s.clip_seconds * fps) for s in result.scenes]
    expected = sum(frames) - 2 * fade  # each seam overlaps two scenes by the fade

    probe = ffprobe(out)
    assert packet_count(out) == expected
    assert abs(probe.duration - expected / fps) < 0.02
    assert abs(float(probe.stream("audio")["duration"]) - expected / fps) < 0.03
    decode = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", str(out), "-f", "null",
                             "-"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert decode.returncode == 0 and decode.stderr == ""

    # Every packet outside the seams is a clip's own, copied; only the seams are new: per
    # seam, the last 15 frames of one scene over the first 15 of the next, as 15 frames.
    from_clips = {h for s in result.scenes for h in packet_hashes(s.clip)}
    new = [i for i, h in enumerate(packet_hashes(out)) if h not in from_clips]
    seam_start = frames[0] - fade
    second_seam = frames[0] + frames[1] - 2 * fade
    assert new == [*range(seam_start, seam_start + fade), *range(second_seam, second_seam + fade)]

    # In the middle of the first seam the picture is a blend of the two scenes.
    before = frame_at(out, seam_start - 1, fps, tmp_path / "before.png")
    middle = frame_at(out, seam_start + fade // 2, fps, tmp_path / "middle.png")
    after = frame_at(out, seam_start + fade, fps, tmp_path / "after.png")
    blend = Image.blend(before, after, 0.5)
    assert mean_difference(middle, blend) < mean_difference(middle, before) / 2
    assert mean_difference(middle, blend) < mean_difference(middle, after) / 2


async def test_scenes_with_the_same_narration_share_one_wav(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """Two scenes saying the same words reuse one cached WAV; the sound pass reads it twice."""
    settings = make_settings(captions={"enabled": False})
    script = "## 1\nimage: one\nSame words.\n\n## 2\nimage: two\nSame words.\n"
    out = tmp_path / "v.mp4"
    plan = plan_render(parse_script(script), settings)
    result = await render_plan(plan, settings, out)
    assert result.scenes[0].audio == result.scenes[1].audio
    probe = ffprobe(out)
    assert abs(probe.duration - sum(s.clip_seconds for s in result.scenes)) < 0.2
    assert abs(integrated_loudness(out) - settings.sound.loudness_target) <= 1.0


def audio_packets(path: Path) -> list[str]:
    """An MD5 of every audio packet as stored."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy",
         "-f", "framemd5", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line[:1].isdigit()]


async def test_a_picture_edit_reuses_the_soundtrack_a_narration_or_music_edit_does_not(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """The sound pass reads the whole narration three times; when only pictures changed, the
    soundtrack made last time is added as it is."""
    music = make_music(tmp_path / "tone.ogg")
    settings = make_settings(sound={"music": str(music)}, captions={"enabled": False})
    folder = settings.storage.data_dir / "cache" / "soundtrack"

    def tracks() -> list[Path]:
        return sorted(folder.rglob("*.m4a"))

    async def render_text(text: str, out: Path) -> RenderResult:
        return await render_plan(plan_render(parse_script(text), settings), settings, out)

    first = await render_text(SCRIPT, tmp_path / "first.mp4")
    [track] = tracks()
    made = track.stat().st_ino

    # A new picture for scene 1: the same narration, the same lengths.
    pictured = SCRIPT.replace("## 1\n", "## 1\nimage: a red lamp at night\n")
    second = await render_text(pictured, tmp_path / "second.mp4")
    assert second.scenes[0].image != first.scenes[0].image
    assert packet_hashes(tmp_path / "second.mp4") != packet_hashes(tmp_path / "first.mp4")
    assert tracks() == [track] and track.stat().st_ino == made
    assert audio_packets(tmp_path / "second.mp4") == audio_packets(tmp_path / "first.mp4")
    probe = ffprobe(tmp_path / "second.mp4")
    clips = sum(s.clip_seconds for s in second.scenes)
    assert abs(probe.duration - clips) < 0.05
    assert abs(float(probe.stream("audio")["start_time"])) < 0.01
    assert abs(float(probe.stream("audio")["duration"]) - clips) < 0.05
    assert probe.tags.get("title") == "Sound"

    # Another track under the same name: measured and mixed again.
    make_music(music, seconds=2.5)
    await render_text(pictured, tmp_path / "third.mp4")
    assert len(tracks()) == 2

    # A changed line: the narration is read again, and lands on the loudness target.
    spoken = pictured.replace("polished the glass", "cleaned the glass")
    await render_text(spoken, tmp_path / "fourth.mp4")
    assert len(tracks()) == 3
    assert abs(integrated_loudness(tmp_path / "fourth.mp4") - settings.sound.loudness_target) <= 1


async def test_the_soundtrack_is_made_while_the_pictures_are(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every narration exists long before the last picture: the soundtrack is made then, so
    after the last clip only the join and adding it remain."""
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp-test-key-0123456789abcdef")
    async with FakeTogether(latency=3.0) as fake:  # 6 s of pictures: room on a busy machine
        settings = make_settings(images={"provider": "together", "base_url": fake.base_url},
                                 captions={"enabled": False})  # fmt: skip
        folder = settings.storage.data_dir / "cache" / "soundtrack"
        when_the_last_picture_came: list[list[Path]] = []

        def look(event: ProgressEvent) -> None:
            if (isinstance(event, SceneEvent) and event.scene == 2
                    and event.stage is Stage.IMAGE and event.status is Status.DONE):  # fmt: skip
                when_the_last_picture_came.append(sorted(folder.rglob("*.m4a")))

        out = tmp_path / "v.mp4"
        result = await render_plan(plan_render(parse_script(SCRIPT), settings), settings, out,
                                   on_event=look)  # fmt: skip
    assert len(fake.requests) == 2
    [tracks] = when_the_last_picture_came
    assert len(tracks) == 1  # made, and already in the cache
    assert sorted(folder.rglob("*.m4a")) == tracks  # the join used it: none made after
    probe = ffprobe(out)
    clips = sum(s.clip_seconds for s in result.scenes)
    assert abs(float(probe.stream("audio")["duration"]) - clips) < 0.05
    assert abs(integrated_loudness(out) - settings.sound.loudness_target) <= 1.0
