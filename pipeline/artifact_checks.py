"""Checks every artifact passes before it enters the cache.

A service can answer 200 with something that is not what was asked for: an HTML page, a 1x1
PNG, a 50 MB picture, ten minutes of audio for two words. Cached, such an answer would break
every later render of that scene without a single new request. So:

- an image decodes (PNG, JPEG or WebP, one frame), is at least `[limits] image_min_side` and
  at most `image_max_side` pixels a side, and `image_max_mb` at most;
- narration probes as audio and lasts a plausible time for its text: at most
  `speech_max_factor` times what the text takes at `speech_chars_per_second`, plus
  `speech_extra_seconds`;
- a clip probes, with a video and an audio stream, to the length it was encoded for.

A refused image is an `ImageError` and refused speech a `TTSError`, both retryable (a bad
answer is a server fault); a wrong clip is a `MediaError`.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from pathlib import Path
from typing import NoReturn

from PIL import Image

from .config import LimitsConfig
from .errors import ImageError, MediaError, TTSError
from .media import probe

__all__ = [
    "IMAGE_FORMATS",
    "check_audio",
    "check_clip",
    "check_image",
    "check_image_file",
    "longest_plausible_speech",
]

IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}  # Pillow's name → ours
MB = 1024 * 1024


def check_image(data: bytes, limits: LimitsConfig) -> bytes:
    """Return `data` if it is a usable picture; raise a retryable ImageError saying why not."""
    _inspect(data, limits)
    return data


async def check_image_file(path: Path, limits: LimitsConfig, *, cached: bool = False) -> str:
    """`check_image` on a file, off the event loop; returns the picture's format.

    `cached`: the file is a cached picture, every pixel of which was decoded before it entered
    the cache. A PNG is then checked by its chunks' checksums instead (a cut or a changed byte
    still fails), a twentieth of the cost: a one-scene edit re-checks every other scene's."""

    def read_and_check() -> str:
        try:
            size = path.stat().st_size
            if size > limits.image_max_mb * MB:  # not read into memory just to be refused
                _refuse(f"is {size / MB:.1f} MB; at most {limits.image_max_mb:g} MB is accepted")
            return _inspect(path.read_bytes(), limits, decode=not cached)
        except OSError as exc:
            raise ImageError(f"the image cannot be read: {exc.strerror or exc}") from None

    return await asyncio.to_thread(read_and_check)


def _inspect(data: bytes, limits: LimitsConfig, *, decode: bool = True) -> str:
    """The picture's format, if `data` is a usable picture. `decode=False`: a PNG's chunks
    are checked (their CRCs, through IEND) instead of decoding its pixels."""
    if not data:
        _refuse("is empty")
    if len(data) > limits.image_max_mb * MB:
        _refuse(f"is {len(data) / MB:.1f} MB; at most {limits.image_max_mb:g} MB is accepted")
    try:
        with warnings.catch_warnings():  # the size is checked below, before any pixel is read
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        _refuse("is far too many pixels to decode")
    except Exception:  # Pillow raises many kinds for bytes that are not a picture
        _refuse(f"is not a picture ({_looks_like(data)})")
    with picture:
        name = IMAGE_FORMATS.get(picture.format or "")
        if name is None:
            _refuse(f"is a {picture.format or 'strange'} file; PNG, JPEG or WebP is needed")
        width, height = picture.size
        if min(width, height) < limits.image_min_side:
            _refuse(f"is {width}×{height} px; at least {limits.image_min_side} px a side "
                    "is needed")  # fmt: skip
        if max(width, height) > limits.image_max_side:
            _refuse(f"is {width}×{height} px; at most {limits.image_max_side} px a side "
                    "is accepted")  # fmt: skip
        if getattr(picture, "n_frames", 1) > 1:
            _refuse(f"is an animated {name}; a still picture is needed")
        try:
            if decode or name != "PNG":
                picture.load()  # every pixel: a truncated or corrupt file fails here
            else:
                picture.verify()  # every chunk's CRC, up to IEND: a cut or changed byte fails
        except Exception as exc:
            _refuse(f"is a damaged {name} ({type(exc).__name__}: {str(exc)[:80]})")
    return name


def longest_plausible_speech(text: str, speed: float, limits: LimitsConfig) -> float:
    """Seconds that narrating `text` at `speed` may last, at most."""
    spoken = len(text) / (limits.speech_chars_per_second * speed)
    return limits.speech_max_factor * spoken + limits.speech_extra_seconds


async def check_audio(path: Path, *, text: str, speed: float, limits: LimitsConfig) -> float:
    """The narration's length in seconds, if it is audio of a plausible length for `text`;
    else a retryable TTSError."""
    try:
        info = await probe(path)
    except MediaError:
        raise TTSError("the narration is not audio that can be read", retryable=True) from None
    if info.stream("audio") is None:
        raise TTSError("the narration has no sound in it", retryable=True)
    if info.duration <= 0:
        raise TTSError("the narration is empty", retryable=True)
    longest = longest_plausible_speech(text, speed, limits)
    if info.duration > longest:
        raise TTSError(
            f"the narration is {_duration(info.duration)} long for {len(text)} characters of "
            f"text; at most {_duration(longest)} is plausible, so it was not kept",
            retryable=True,
        )
    return info.duration


async def check_clip(path: Path, *, seconds: float, fps: int) -> float:
    """The clip's length, if it has picture and sound and lasts `seconds` (give or take two
    frames and the audio codec's own padding); else a MediaError."""
    info = await probe(path)
    missing = [kind for kind in ("video", "audio") if info.stream(kind) is None]
    if missing:
        raise MediaError(f"the clip came out without {' or '.join(missing)}")
    tolerance = max(0.1, 2 / fps)
    if abs(info.duration - seconds) > tolerance:
        raise MediaError(f"the clip came out {info.duration:.2f} s long instead of {seconds:.2f} s")
    return info.duration


def _refuse(problem: str) -> NoReturn:
    raise ImageError(f"the image {problem}", retryable=True)


def _looks_like(data: bytes) -> str:
    start = data[:512].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if start.startswith((b"<?xml", b"<")):
        return "XML or HTML text"
    if start.startswith((b"{", b"[")):
        return "JSON text"
    return f"{len(data)} bytes of something else"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} minutes"
