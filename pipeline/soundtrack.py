"""The sound pass, after the join: the narration rebuilt from the scenes' WAVs, background
music laid under it and ducked, and the whole loudness normalised — audio only; the video
stream is copied untouched (`-c:v copy`).

    narration (every scene's WAV, padded to its clip's length, joined or crossfaded)
        ├──────────────────────────────────────────────┐ (the sidechain key)
    music (looped, trimmed, levelled, faded) ── sidechaincompress ── amix ── gain, limiter ── AAC
    own clips' sound (each at its scene, levelled) ── sidechaincompress ──┘

- The narration is taken from the WAVs, not decoded from the clips' AAC: one encode less, and
  the crossfades between scenes are made here, sample-accurately.
- The music's level is set relative to the narration's measured loudness (`music_level` LU),
  so a quiet or a loud track ends up in the same place.
- With `[video] clip_audio = "duck"`, a scene's own video clip keeps its sound: looped or cut
  with the clip, placed at the scene's start (faded in and out over its crossfades), levelled
  to `clip_level` LU under the narration, and ducked while the narration speaks, like music.
- Loudness is normalised by measuring (`ebur128`, integrated loudness): the mix is measured,
  the gain that reaches the target is applied through a lookahead limiter (peaks stay under
  the true-peak ceiling), that is measured again, and the gain grows by what the limiter
  took, twice. It lands within about 0.1 LU of the target. (`loudnorm` did this before: each
  of its measurements cost 5 times an `ebur128` one, since it works at 192 kHz.)
- The finished soundtrack (audio only) is cached by what made it: an edit of pictures only
  adds it to the new video by stream copy (`add_soundtrack`).

A folder of music: its audio files, sorted by name, are picked by a hash of the script (title
and narration), so a re-render of the same script gets the same track.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import ffmpeg

from .config import SoundConfig
from .errors import ConfigError, MediaError
from .media import probe
from .proc import run_program

__all__ = [
    "MUSIC_SUFFIXES",
    "NarrationPart",
    "add_soundtrack",
    "check_music",
    "clip_sound_stream",
    "make_soundtrack",
    "measure_loudness",
    "music_files",
    "pick_music",
    "sound_pass_needed",
    "soundtrack_identity",
]

MUSIC_SUFFIXES = frozenset({".mp3", ".m4a", ".aac", ".ogg", ".opus", ".flac", ".wav"})
AUDIO_RATE = 48000
MUSIC_FADE_IN = 0.3
DUCK_ATTACK_MS = 20
DUCK_RELEASE_MS = 350
MAX_MUSIC_GAIN_DB = 30.0
MAX_CLIP_GAIN_DB = 12.0  # a quiet clip is lifted this much at most: its noise floor stays low
SETTLED_LU = 0.05  # close enough: ebur128 reports to 0.1 LU
MIN_SLOPE = 0.25  # the loudness the limiter lets through per dB of gain, at least
SOUND_RECIPE = 1  # the soundtrack cache: a change to how a soundtrack is made bumps it
LIMITER_HEADROOM = 1.0  # dB under the true-peak ceiling: the limiter works on samples


@dataclass(frozen=True)
class NarrationPart:
    """One scene's narration WAV and the length of its clip (narration plus pad); and the
    scene's own video clip when its sound goes under the narration."""

    audio: Path
    seconds: float
    clip_sound: Path | None = None


def music_files(source: Path) -> list[Path]:
    """The audio files a music setting names: the file itself, or a folder's, by name."""
    if source.is_file():
        if source.suffix.lower() not in MUSIC_SUFFIXES:
            raise ConfigError(f"the music {source} is not an audio file: use one of "
                              f"{', '.join(sorted(MUSIC_SUFFIXES))}")  # fmt: skip
        return [source]
    if source.is_dir():
        return sorted(
            p for p in source.iterdir() if p.is_file() and p.suffix.lower() in MUSIC_SUFFIXES
        )
    raise ConfigError(f"the music {source} does not exist")


def pick_music(source: Path, seed: str) -> Path:
    """One track for this script: a file as given, or one of a folder's picked by `seed`."""
    files = music_files(source)
    if not files:
        raise ConfigError(f"the music folder {source} holds no audio files "
                          f"({', '.join(sorted(MUSIC_SUFFIXES))})")  # fmt: skip
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return files[int.from_bytes(digest[:8], "big") % len(files)]


async def check_music(track: Path) -> None:
    """Before a render: the music file holds audio ffprobe can read (else ConfigError)."""
    try:
        info = await probe(track)
    except MediaError:
        info = None
    if info is None or info.stream("audio") is None or info.duration <= 0:
        raise ConfigError(f"the music {track.name} holds no audio that can be read")


def sound_pass_needed(
    config: SoundConfig, *, music: Path | None, crossfade: bool, clip_sound: bool = False
) -> bool:
    return config.normalize or music is not None or crossfade or clip_sound


# ------------------------------------------------------------------ graphs

Stream: TypeAlias = Any  # an ffmpeg-python FilterableStream (the library is untyped)


def _stereo(stream: Stream) -> Stream:
    return stream.filter("aresample", AUDIO_RATE).filter(
        "aformat", sample_fmts="fltp", sample_rates=AUDIO_RATE, channel_layouts="stereo"
    )


def narration_stream(parts: Sequence[NarrationPart], crossfades: Sequence[float]) -> Stream:
    """Every scene's WAV, padded (then cut) to its clip's length, one after another; the
    n-th seam overlaps the two scenes by `crossfades[n]` seconds (0: a plain cut)."""
    if len(crossfades) != max(0, len(parts) - 1):
        raise ValueError("one crossfade per seam")
    # ffmpeg-python merges identical nodes: two scenes with the same narration (the same
    # cached WAV) must read one input through `asplit`, one output per use.
    uses = Counter(part.audio for part in parts)
    sources: dict[Path, list[Stream]] = {}
    for audio, count in uses.items():
        source = _stereo(ffmpeg.input(str(audio)).audio)
        if count == 1:
            sources[audio] = [source]
        else:
            split = source.filter_multi_output("asplit", count)
            sources[audio] = [split.stream(i) for i in range(count)]
    streams = [
        sources[part.audio]
        .pop(0)
        .filter("apad", whole_dur=f"{part.seconds:.6f}")
        .filter("atrim", end=f"{part.seconds:.6f}")
        for part in parts
    ]
    if not any(crossfades):
        return streams[0] if len(streams) == 1 else ffmpeg.concat(*streams, v=0, a=1)
    joined = streams[0]
    for stream, fade in zip(streams[1:], crossfades, strict=True):
        if fade > 0:
            joined = ffmpeg.filter([joined, stream], "acrossfade", d=f"{fade:.6f}",
                                   c1="tri", c2="tri")  # fmt: skip
        else:
            joined = ffmpeg.concat(joined, stream, v=0, a=1)
    return joined


def music_stream(music: Path, seconds: float, *, gain_db: float, fade: float) -> Stream:
    """The track looped (or cut) to `seconds`, at `gain_db`, faded in briefly and out."""
    stream = (
        _stereo(ffmpeg.input(str(music), stream_loop=-1).audio)
        .filter("atrim", duration=f"{seconds:.6f}")
        .filter("asetpts", "PTS-STARTPTS")
        .filter("volume", f"{gain_db:.2f}dB")
        .filter("afade", t="in", d=f"{min(MUSIC_FADE_IN, seconds / 4):.3f}")
    )
    if fade > 0:
        fade = min(fade, seconds / 2)
        stream = stream.filter("afade", t="out", st=f"{seconds - fade:.6f}", d=f"{fade:.6f}")
    return stream


def clip_sound_stream(parts: Sequence[NarrationPart], crossfades: Sequence[float]) -> Stream:
    """The own clips' sound on the video's timeline: each scene's clip looped (or cut) to its
    length from its start, as the picture is, delayed to where the scene starts, faded in and
    out over the crossfades; silence elsewhere. Only for parts with a `clip_sound`."""
    starts = [0.0]
    for part, fade in zip(parts, [*crossfades, 0.0], strict=True):
        starts.append(starts[-1] + part.seconds - fade)
    total = starts[-1]
    uses = Counter(part.clip_sound for part in parts if part.clip_sound is not None)
    sources: dict[Path, list[Stream]] = {}
    for clip, count in uses.items():
        source = _stereo(ffmpeg.input(str(clip), stream_loop=-1).audio)
        if count == 1:
            sources[clip] = [source]
        else:
            split = source.filter_multi_output("asplit", count)
            sources[clip] = [split.stream(i) for i in range(count)]
    placed: list[Stream] = []
    for index, part in enumerate(parts):
        if part.clip_sound is None:
            continue
        fade_in = crossfades[index - 1] if index > 0 else 0.0
        fade_out = crossfades[index] if index < len(crossfades) else 0.0
        stream = (
            sources[part.clip_sound].pop(0)
            .filter("atrim", duration=f"{part.seconds:.6f}")
            .filter("asetpts", "PTS-STARTPTS")
        )  # fmt: skip
        if fade_in > 0:
            stream = stream.filter("afade", t="in", d=f"{fade_in:.6f}", curve="tri")
        if fade_out > 0:
            stream = stream.filter("afade", t="out", st=f"{part.seconds - fade_out:.6f}",
                                   d=f"{fade_out:.6f}", curve="tri")  # fmt: skip
        delay = round(starts[index] * 1000)
        if delay > 0:
            stream = stream.filter("adelay", delays=str(delay), all=1)
        placed.append(stream.filter("apad", whole_dur=f"{total:.6f}"))
    if not placed:
        raise ValueError("no part has a clip sound")
    mixed = placed[0] if len(placed) == 1 else ffmpeg.filter(
        placed, "amix", inputs=len(placed), duration="longest", normalize=0)  # fmt: skip
    return mixed.filter("atrim", end=f"{total:.6f}")


def mix_stream(narration: Stream, beds: Sequence[Stream], config: SoundConfig) -> Stream:
    """Each bed (the music, the clips' sound) ducked under the narration (sidechain
    compression keyed by it), then all together."""
    split = narration.filter_multi_output("asplit", len(beds) + 1)
    voice = split.stream(0)
    ducked = [
        ffmpeg.filter(
            [bed, split.stream(i + 1)], "sidechaincompress",
            threshold=f"{10 ** (config.duck_threshold / 20):.6f}", ratio=config.duck_ratio,
            attack=DUCK_ATTACK_MS, release=DUCK_RELEASE_MS,
        )
        for i, bed in enumerate(beds)
    ]  # fmt: skip
    return ffmpeg.filter([voice, *ducked], "amix", inputs=len(beds) + 1, duration="first",
                         normalize=0)  # fmt: skip


def _levelled(stream: Stream, gain_db: float, config: SoundConfig) -> Stream:
    """`gain_db` of gain, with a lookahead limiter keeping the peaks `LIMITER_HEADROOM` dB
    under the true-peak ceiling (delay compensated, no automatic make-up gain)."""
    limit = 10 ** ((config.true_peak - LIMITER_HEADROOM) / 20)
    return stream.filter("volume", f"{gain_db:.3f}dB").filter(
        "alimiter", limit=f"{limit:.6f}", attack=5, release=50, level="false", latency="true"
    )


def _global(stream: ffmpeg.nodes.OutputStream, *, log: str = "info") -> list[str]:
    """The argv; `log` "info" where the log holds a measurement, "error" elsewhere."""
    argv: list[str] = (
        stream.global_args("-hide_banner", "-nostdin", "-loglevel", log)
        .overwrite_output()
        .compile()
    )
    return argv


def measure_argv(audio: Stream) -> list[str]:
    """ffmpeg measuring `audio`'s integrated loudness (EBU R128, `ebur128`: a fifth of what
    `loudnorm`'s measuring costs, which resamples to 192 kHz and levels the stream too)."""
    return _global(ffmpeg.output(audio.filter("ebur128", peak="none"), "-", f="null"))


# ------------------------------------------------------------------ running


async def run_for_log(argv: Sequence[str], *, what: str, timeout: float) -> str:
    """Run ffmpeg and return its log (stderr), where `ebur128` writes its measurement."""
    log = await run_program(argv, what=what, timeout=timeout, output="stderr")
    return log.decode("utf-8", "replace")


_INTEGRATED = re.compile(r"Integrated loudness:\s+I:\s+(-?(?:[\d.]+|inf))\s+LUFS")


async def measure_loudness(
    audio: Stream, *, timeout: float, what: str = "ffmpeg (loudness measurement)"
) -> float:
    """`audio`'s integrated loudness in LUFS (-70 or less: silence)."""
    log = await run_for_log(measure_argv(audio), what=what, timeout=timeout)
    found = _INTEGRATED.findall(log[log.rfind("Summary:") :])
    if not found:
        raise MediaError("ebur128 reported no measurement", detail=log[-2000:])
    value = float(found[-1])
    return max(-99.0, value) if not math.isnan(value) else -99.0


async def _normalized(make: Callable[[], Stream], config: SoundConfig, *, timeout: float) -> Stream:
    """`make()`'s audio at the loudness target, through a lookahead limiter that keeps the
    peaks under the true-peak ceiling (speech peaks high: a plain gain would exceed it).

    The limiter takes some loudness, more the higher the gain (0.5-3 LU here), so the gain is
    found by measuring: 1. the audio as it is: the gain that would reach the target without
    the limiter; 2. the audio at that gain, limited: what the limiter took is added; 3. at
    that gain: the last step follows the slope of the last two (the secant). It lands within
    about 0.1 LU of the target.
    """
    target = config.loudness_target
    first = await measure_loudness(make(), timeout=timeout)
    if first <= -70:  # silence: nothing to normalise
        return _stereo(make())

    async def limited(gain: float) -> float:
        return await measure_loudness(_levelled(make(), gain, config), timeout=timeout)

    gain = target - first
    level = await limited(gain)
    if level > -70 and abs(target - level) >= SETTLED_LU:
        step = target - level
        again = await limited(gain + step)
        gain += step
        if abs(target - again) >= SETTLED_LU:  # the slope of the last two steps
            slope = min(1.0, max(MIN_SLOPE, (again - level) / step))
            gain += (target - again) / slope
    return _stereo(_levelled(make(), gain, config))


def soundtrack_identity(
    parts: Sequence[NarrationPart],
    *,
    config: SoundConfig,
    music: Path | None,
    crossfades: Sequence[float] = (),
    audio_bitrate: str = "160k",
) -> dict[str, object]:
    """Everything a soundtrack is made of, for its cache key. The WAVs and own clips are
    cache artifacts named for what made them; their size and inode tell a file made again
    (Piper never says a line twice the same) from the one measured. The music is the user's
    file: its size and modification time."""

    def file(path: Path | None, *, user: bool = False) -> list[object] | None:
        if path is None:
            return None
        stat = path.stat()
        return [str(path), stat.st_size, stat.st_mtime_ns if user else stat.st_ino]

    return {
        "recipe": SOUND_RECIPE,
        "parts": [[file(p.audio), round(p.seconds, 6), file(p.clip_sound)] for p in parts],
        "crossfades": [round(f, 6) for f in crossfades],
        "music": file(music, user=True),
        "sound": config.model_dump(mode="json"),
        "bitrate": audio_bitrate,
    }


async def make_soundtrack(
    out: Path,
    parts: Sequence[NarrationPart],
    *,
    config: SoundConfig,
    music: Path | None,
    crossfades: Sequence[float] = (),
    audio_bitrate: str = "160k",
    timeout: float = 600.0,
) -> None:
    """Write `out` (AAC in MP4, audio only): the narration of `parts`, the music and the own
    clips' sound under it, at the loudness target."""
    crossfades = list(crossfades) or [0.0] * (len(parts) - 1)
    seconds = sum(p.seconds for p in parts) - sum(crossfades)
    clips = any(p.clip_sound is not None for p in parts)

    def soundtrack(music_gain: float | None, clip_gain: float | None) -> Stream:
        narration = narration_stream(parts, crossfades)
        beds = []
        if music is not None and music_gain is not None:
            beds.append(music_stream(music, seconds, gain_db=music_gain, fade=config.music_fade))
        if clip_gain is not None:
            beds.append(clip_sound_stream(parts, crossfades).filter("volume", f"{clip_gain:.2f}dB"))
        return mix_stream(narration, beds, config) if beds else narration

    gain: float | None = None
    clip_gain: float | None = None
    if music is not None or clips:  # levelled against the narration's measured loudness
        measuring = [measure_loudness(soundtrack(None, None), timeout=timeout)]
        if music is not None:
            bare = music_stream(music, seconds, gain_db=0.0, fade=0.0)
            what = f"ffmpeg (reading the music {music.name})"
            measuring.append(measure_loudness(bare, timeout=timeout, what=what))
        if clips:
            what = "ffmpeg (reading the clips' own sound)"
            bed = clip_sound_stream(parts, crossfades)
            measuring.append(measure_loudness(bed, timeout=timeout, what=what))
        voice, *beds = await asyncio.gather(*measuring)
        if music is not None:
            track = beds.pop(0)
            if track <= -70:
                raise MediaError(f"the music {music.name} is silent")
            wanted = voice + config.music_level if voice > -70 else -30.0
            gain = min(MAX_MUSIC_GAIN_DB, wanted - track)
        if clips and beds[0] > -70:  # a silent clip adds nothing
            wanted = voice + config.clip_level if voice > -70 else -30.0
            clip_gain = min(MAX_CLIP_GAIN_DB, wanted - beds[0])

    if config.normalize:
        audio = await _normalized(lambda: soundtrack(gain, clip_gain), config, timeout=timeout)
    else:
        audio = _stereo(soundtrack(gain, clip_gain))
    stream = ffmpeg.output(audio, str(out), acodec="aac", audio_bitrate=audio_bitrate,
                           ar=AUDIO_RATE, ac=2, f="mp4")  # fmt: skip
    await run_for_log(_global(stream, log="error"), what="ffmpeg (sound)", timeout=timeout)


async def add_soundtrack(video: Path, audio: Path, out: Path, *, timeout: float = 600.0) -> None:
    """Write `out`: `video`'s video stream and `audio`'s sound, both copied, `video`'s tags."""
    stream = ffmpeg.output(
        ffmpeg.input(str(video)).video, ffmpeg.input(str(audio)).audio, str(out),
        vcodec="copy", acodec="copy", map_metadata=0, movflags="+faststart", f="mp4",
    )  # fmt: skip
    await run_for_log(_global(stream, log="error"), what="ffmpeg (adding the sound)",
                      timeout=timeout)  # fmt: skip
