"""Crossfades between scenes that keep the clips themselves stream-copied: only the seams are
re-encoded.

With `[video] crossfade = d` (seconds), every clip is encoded with IDR frames `d` from each
end (`ClipSpec.keyframes`). At the join each clip is cut there, by stream copy (the segment
muxer cuts at those keyframes exactly), into head | body | tail. For every pair of scenes the
tail of the first and the head of the second are decoded, crossfaded with `xfade` and
encoded with the clips' codec settings: that short seam is the only picture encoded twice.
Then the pieces are joined by stream copy like plain clips:

    head₁ body₁ [tail₁ ⨯ head₂] body₂ [tail₂ ⨯ head₃] body₃ tail₃

Each crossfade overlaps the two scenes, so the video is d shorter per seam; the sound pass
(pipeline/soundtrack.py) crossfades the narration by the same amounts, from the WAVs, so the
joined pieces carry no audio at all. A clip shorter than three crossfades fades for a third
of its length (down to a plain cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from .config import VideoConfig
from .errors import MediaError
from .proc import run_program
from .video import codec_args, concat_argv, concat_list

__all__ = ["Piece", "clip_keyframes", "join_with_crossfades", "seam_frames"]

AUDIO_ARGS = ("acodec", "audio_bitrate", "ar", "ac")


@dataclass(frozen=True)
class Piece:
    path: Path
    frames: int


def seam_frames(config: VideoConfig, frames: int) -> int:
    """How many frames at each end of a clip of `frames` frames may take part in a fade."""
    if config.crossfade <= 0:
        return 0
    return max(0, min(round(config.crossfade * config.fps), frames // 3))


def clip_keyframes(config: VideoConfig, frames: int) -> tuple[int, ...]:
    """The frames a clip must start a GOP at, so the join can cut it there by stream copy."""
    edge = seam_frames(config, frames)
    return (edge, frames - edge) if edge else ()


def _quiet(stream: ffmpeg.nodes.OutputStream) -> list[str]:
    argv: list[str] = (
        stream.global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .overwrite_output()
        .compile()
    )
    return argv


def split_argv(clip: Path, edge: int, frames: int, fps: int, pattern: Path) -> list[str]:
    """Cut a clip's video, by stream copy, at frames `edge` and `frames - edge` (keyframes)."""
    times = ",".join(f"{(n - 0.5) / fps:.6f}" for n in (edge, frames - edge))
    options = {
        "c": "copy", "f": "segment", "segment_times": times, "segment_format": "mp4",
        "reset_timestamps": 1, "segment_format_options": "video_track_timescale=90000",
    }  # fmt: skip
    return _quiet(ffmpeg.input(str(clip)).video.output(str(pattern), **options))


def seam_argv(tail: Piece, head: Piece, fade: int, config: VideoConfig, out: Path) -> list[str]:
    """The end of one scene crossfaded into the start of the next, encoded like the clips."""
    fps = config.fps
    inputs = [ffmpeg.input(str(tail.path)).video, ffmpeg.input(str(head.path)).video]
    video = ffmpeg.filter(inputs, "xfade", transition="fade", duration=f"{fade / fps:.6f}",
                          offset=f"{(tail.frames - fade) / fps:.6f}")  # fmt: skip
    codec = {k: v for k, v in codec_args(config).items() if k not in AUDIO_ARGS}
    frames = tail.frames + head.frames - fade
    return _quiet(video.output(str(out), f="mp4", frames=frames, **codec))


def timed_concat_list(pieces: list[Piece], fps: int) -> str:
    """An ffconcat list giving every piece its exact length. (The segment muxer starts a
    clip's first piece at its B-frame delay; without `duration` the next piece would start
    that much late.)"""
    lines = concat_list([p.path for p in pieces]).splitlines()
    out = lines[:1]
    for line, piece in zip(lines[1:], pieces, strict=True):
        out += [line, f"duration {piece.frames / fps:.6f}"]
    return "\n".join(out) + "\n"


@contextlib.asynccontextmanager
async def _maybe(slot: asyncio.Semaphore | None) -> AsyncIterator[None]:
    if slot is None:
        yield
    else:
        async with slot:
            yield


async def _split(clip: Piece, edge: int, index: int, config: VideoConfig,
                 work: Path) -> list[Piece]:  # fmt: skip
    if edge == 0:
        return [Piece(clip.path, clip.frames)]
    argv = split_argv(clip.path, edge, clip.frames, config.fps, work / f"clip{index:04d}-%d.mp4")
    await run_program(argv, what=f"ffmpeg (cutting clip {index + 1})", timeout=config.timeout)
    parts = [work / f"clip{index:04d}-{n}.mp4" for n in range(3)]
    if not all(p.is_file() for p in parts) or (work / f"clip{index:04d}-3.mp4").exists():
        raise MediaError(f"clip {index + 1} could not be cut at its crossfade keyframes")
    return [
        Piece(parts[0], edge),
        Piece(parts[1], clip.frames - 2 * edge),
        Piece(parts[2], edge),
    ]


async def join_with_crossfades(
    clips: list[Piece],
    out: Path,
    *,
    config: VideoConfig,
    title: str,
    work: Path,
    slot: asyncio.Semaphore | None = None,
) -> list[float]:
    """Join `clips` (video only) into `out` with crossfades; return each seam's crossfade in
    seconds, for the sound pass. `work` is a scratch folder (the caller removes it)."""
    work.mkdir(parents=True, exist_ok=True)
    edges = [seam_frames(config, clip.frames) for clip in clips]
    pieces = await asyncio.gather(
        *(_split(clip, edges[i], i, config, work) for i, clip in enumerate(clips))
    )
    fades = [min(a, b) for a, b in itertools.pairwise(edges)]

    async def seam(i: int) -> list[Piece]:
        tail, head = pieces[i][-1], pieces[i + 1][0]
        if fades[i] == 0:  # a clip too short to fade: a plain cut
            return []
        out_seam = work / f"seam{i:04d}.mp4"
        argv = seam_argv(tail, head, fades[i], config, out_seam)
        async with _maybe(slot):
            await run_program(argv, what=f"ffmpeg (crossfade {i + 1})", timeout=config.timeout)
        return [Piece(out_seam, tail.frames + head.frames - fades[i])]

    seams = await asyncio.gather(*(seam(i) for i in range(len(clips) - 1)))
    order: list[Piece] = []
    for i, parts in enumerate(pieces):
        first = 1 if i > 0 and fades[i - 1] else 0
        last = len(parts) - 1 if i < len(clips) - 1 and fades[i] else len(parts)
        order.extend(parts[first:last])
        if i < len(clips) - 1:
            order.extend(seams[i])
    list_file = work / "pieces.ffconcat"
    list_file.write_text(timed_concat_list(order, config.fps), encoding="utf-8")
    await run_program(concat_argv(list_file, out, title=title), what="ffmpeg (join)",
                      timeout=config.timeout)  # fmt: skip
    return [fade / config.fps for fade in fades]
