"""A scene's own picture or video clip (`media: NAME` in a script): found, checked, and kept in
the artifact cache before anything is rendered or paid for.

    name ─ MediaSource.find ─→ a file ─ copied into the cache (sha256) ─ ffprobe, decode ─→ OwnMedia

Where a name may point is the front end's choice, behind one small interface:

- `FolderMedia` (the CLI): a file in the script's folder or below it. Never an absolute path,
  never `..` out of the folder, never a symbolic link that leads out of it.
- `UploadedMedia` (the bot): only the files uploaded with that render, by their names; a name
  never reaches a path on the bot's host.

The copy is what the render uses (the file may change on disk meanwhile), named by the sha256 of
the file as given, so the same picture used twice, or in two renders, is stored once and counted
once under `[storage] cache_max_mb`. What is checked, each refusal one `ScriptError` naming the
scene and the problem:

- the name: it names a file (`MediaSource`);
- the size: at most `[limits] max_media_bytes`, and not empty;
- the kind, from the bytes (ffprobe), never from the name: a PNG, JPEG or WebP picture, or a
  video clip in an MP4/MOV or WebM (Matroska) container with a picture in it; anything else
  (a GIF, a song, a text file) is named as what it is;
- that it is whole: a picture is decoded to its last pixel (Pillow); a clip's keyframes are
  decoded through to its end (ffmpeg, `-xerror`), which finds a cut-off or garbled file;
- its dimensions, at least `[limits] image_min_side` and at most `MEDIA_MAX_SIDE` pixels a
  side, and a clip's length, at most `[limits] max_media_seconds`.

A photo turned by its EXIF orientation is stored turned, as it is meant to be seen (ffmpeg
would show it sideways).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from PIL import Image, ImageOps

from .cache import ArtifactCache, CachePin
from .config import LimitsConfig
from .errors import MediaError, ScriptError
from .images.formats import image_type
from .proc import run_program
from .script import Script

__all__ = [
    "MEDIA_KIND",
    "MEDIA_MAX_SIDE",
    "FolderMedia",
    "MediaKind",
    "MediaProblem",
    "MediaSource",
    "OwnMedia",
    "UploadedMedia",
    "prepare_media",
]

MediaKind = Literal["picture", "video"]
MEDIA_KIND = "media"  # the artifact cache's folder for own media
MEDIA_MAX_SIDE = 8192  # pixels a side: a 48-megapixel phone photo fits, a decompression bomb not
WANTED = "a picture (PNG, JPEG, WebP) or a video clip (MP4, MOV, WebM)"
MB = 1024 * 1024
_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*")
_CHUNK = 1024 * 1024
# ffprobe's format names → what the file is, for the refusal of what is neither.
_PICTURES = {"png_pipe": ".png", "jpeg_pipe": ".jpg", "webp_pipe": ".webp"}
_VIDEOS = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".webm"}
_OTHER_FORMATS = {
    "gif": "a GIF", "apng": "an animated PNG", "mp3": "an MP3 (sound only)",
    "wav": "a WAV (sound only)", "ogg": "an Ogg file", "flac": "a FLAC (sound only)",
    "aac": "an AAC (sound only)", "avi": "an AVI video", "bmp_pipe": "a BMP picture",
    "tiff_pipe": "a TIFF picture", "svg_pipe": "an SVG drawing", "pdf": "a PDF",
    "mpegts": "an MPEG-TS video", "asf": "a WMV/ASF video", "flv": "an FLV video",
}  # fmt: skip


class MediaProblem(Exception):
    """What is wrong with a media file, in words that follow its name ("does not exist in the
    script's folder"). A `MediaSource` raises it; `prepare_media` names the scene."""


class MediaSource(Protocol):
    """Where a script's media names point (a front end's choice)."""

    def find(self, name: str) -> Path:
        """The readable file `name` stands for; raise MediaProblem when there is none."""
        ...


class FolderMedia:
    """The CLI's media: files in `folder` (the script's) or below it, by relative name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find(self, name: str) -> Path:
        root = self.folder.resolve()
        parts = PurePosixPath(name.replace("\\", "/"))
        if parts.is_absolute() or (len(name) > 1 and name[1] == ":"):
            raise MediaProblem("is an absolute path: name a file in the script's folder, "
                               "relative to it")  # fmt: skip
        if ".." in parts.parts:
            raise MediaProblem("leads out of the script's folder ('..'): name a file in it or "
                               "in a folder below it")  # fmt: skip
        path = root / name
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            if path.is_symlink():
                raise MediaProblem("is a link to a file that does not exist") from None
            raise MediaProblem(f"does not exist in the script's folder ({root})") from None
        except (OSError, RuntimeError) as exc:  # a link loop, a name too long
            raise MediaProblem(f"cannot be opened: {_reason(exc)}") from None
        if not real.is_relative_to(root):
            raise MediaProblem("is a link to a file outside the script's folder; copy the file "
                               "into the folder instead")  # fmt: skip
        if real.is_dir():
            raise MediaProblem("is a folder, not a file")
        if not real.is_file():
            raise MediaProblem("is not a regular file")
        return real


class UploadedMedia:
    """A front end's media: only the files uploaded with one render, by their file names
    (exactly, else ignoring case when that is unambiguous). No name is ever a path."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = dict(files)

    def find(self, name: str) -> Path:
        if name in self.files:
            return self.files[name]
        folded = [p for upload, p in self.files.items() if upload.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        if not self.files:
            raise MediaProblem("was not uploaded: attach it to the render")
        names = ", ".join(sorted(self.files)[:10])
        raise MediaProblem(f"is not one of the files uploaded with this render ({names})")


@dataclass(frozen=True)
class OwnMedia:
    """A scene's own picture or clip, checked, in the artifact cache."""

    name: str  # as the script gives it
    kind: MediaKind
    path: Path  # the copy in the artifact cache
    width: int
    height: int
    seconds: float | None = None  # a clip's length
    sound: bool = False  # a clip with a sound track

    @property
    def label(self) -> str:
        return "own picture" if self.kind == "picture" else "own clip"


@dataclass(frozen=True)
class _Inspected:
    kind: MediaKind
    suffix: str
    width: int
    height: int
    seconds: float | None = None
    sound: bool = False
    turn: bool = False  # a picture to store turned by its EXIF orientation


async def prepare_media(
    script: Script,
    source: MediaSource,
    cache: ArtifactCache,
    limits: LimitsConfig,
    *,
    pin: CachePin | None = None,
) -> dict[int, OwnMedia]:
    """Every scene's own media, by scene number: found through `source`, checked, copied into
    `cache` (and pinned there by `pin`, so no eviction removes it while the render needs it).
    Raises ScriptError naming the first scene whose media cannot be used."""
    found: dict[int, OwnMedia] = {}
    done: dict[Path, OwnMedia] = {}  # one file named by several scenes is checked once
    for scene in script.scenes:
        if scene.media is None:
            continue
        try:
            path = source.find(scene.media)
            media = done.get(path)
            if media is None:
                media = await _keep(scene.media, path, cache, limits, pin)
                done[path] = media
        except MediaProblem as exc:
            raise ScriptError(f"media {scene.media!r} {exc}", line=scene.line,
                              scene=scene.number) from None  # fmt: skip
        found[scene.number] = OwnMedia(scene.media, media.kind, media.path, media.width,
                                       media.height, media.seconds, media.sound)  # fmt: skip
    return found


async def _keep(
    name: str, path: Path, cache: ArtifactCache, limits: LimitsConfig, pin: CachePin | None
) -> OwnMedia:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaProblem(f"cannot be read: {_reason(exc)}") from None
    _check_size(size, limits)
    temp = cache.scratch(MEDIA_KIND)
    try:
        digest = await asyncio.to_thread(_copy, path, temp, limits.max_media_bytes)
        facts = await _inspect(temp, limits)
        if facts.turn:
            await asyncio.to_thread(_turn_upright, temp)
        final = cache.path(MEDIA_KIND, digest, facts.suffix)
        if pin is not None:
            pin.add(final)
        final = cache.put_file(temp, MEDIA_KIND, digest, facts.suffix)
    finally:
        temp.unlink(missing_ok=True)
    return OwnMedia(name, facts.kind, final, facts.width, facts.height, facts.seconds,
                    facts.sound)  # fmt: skip


def _check_size(size: int, limits: LimitsConfig) -> None:
    if size == 0:
        raise MediaProblem("is empty")
    if size > limits.max_media_bytes:
        raise MediaProblem(f"is {_megabytes(size)}; at most {_megabytes(limits.max_media_bytes)} "
                           "is accepted ([limits] max_media_bytes)")  # fmt: skip


def _copy(source: Path, target: Path, max_bytes: int) -> str:
    """Copy `source` to `target`, at most `max_bytes` (a file growing meanwhile is refused);
    return the sha256 of what was copied."""
    digest = hashlib.sha256()
    copied = 0
    try:
        with source.open("rb") as reader, target.open("xb") as writer:
            while chunk := reader.read(_CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    _check_size(copied, LimitsConfig(max_media_bytes=max_bytes))
                digest.update(chunk)
                writer.write(chunk)
    except OSError as exc:
        raise MediaProblem(f"cannot be read: {_reason(exc)}") from None
    if copied == 0:
        raise MediaProblem("is empty")
    return digest.hexdigest()


async def _inspect(path: Path, limits: LimitsConfig) -> _Inspected:
    data = await _probe(path)
    info = data.get("format")
    fmt = str(info.get("format_name", "")) if isinstance(info, dict) else ""
    if fmt in _PICTURES:
        return await asyncio.to_thread(_check_picture, path, limits)
    if fmt in _VIDEOS:
        return await _check_video(path, data, _VIDEOS[fmt], limits)
    what = _OTHER_FORMATS.get(fmt, f"a {fmt.split(',')[0]} file" if fmt else "not a known format")
    raise MediaProblem(f"is {what}; {WANTED} is needed")


async def _probe(path: Path) -> dict[str, object]:
    argv = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
            str(path)]  # fmt: skip
    try:
        out = await run_program(argv, what="ffprobe", timeout=60)
        data = json.loads(out)
    except (MediaError, ValueError):
        if _looks_like_media(path):
            raise MediaProblem("is damaged: ffprobe cannot read it") from None
        raise MediaProblem(f"is not {WANTED}") from None
    if not isinstance(data, dict) or not isinstance(data.get("format"), dict):
        raise MediaProblem(f"is not {WANTED}")
    return data


def _looks_like_media(path: Path) -> bool:
    """Whether the first bytes are those of a picture or a clip (then a file ffprobe cannot
    read is a damaged one, not some other kind of file)."""
    with path.open("rb") as file:
        head = file.read(16)
    return (
        image_type(head) is not None
        or head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")
        or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
    )


def _check_picture(path: Path, limits: LimitsConfig) -> _Inspected:
    try:
        with warnings.catch_warnings():  # the size is checked below, before the pixels
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(path)
    except Image.DecompressionBombError:
        raise MediaProblem("has far too many pixels to decode") from None
    except Exception:  # Pillow raises many kinds for a file it cannot read
        raise MediaProblem("is damaged: its picture cannot be read") from None
    with picture:
        kind = picture.format or "?"
        shown = {"WEBP": "WebP"}.get(kind, kind)
        if getattr(picture, "n_frames", 1) > 1:
            raise MediaProblem(f"is an animated {shown}; a still picture (or an MP4 clip) "
                               "is needed")  # fmt: skip
        width, height = _check_sides(*picture.size, limits)
        try:
            picture.load()  # every pixel: a cut-off or garbled file fails here
        except Exception as exc:
            said = str(exc).strip()[:80] or type(exc).__name__
            raise MediaProblem(f"is damaged: its picture cannot be decoded ({said})") from None
        orientation = picture.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation in (5, 6, 7, 8):  # a quarter turn: the sides swap
        width, height = height, width
    suffix = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}.get(kind)
    if suffix is None:
        raise MediaProblem(f"is a {shown} picture; {WANTED} is needed")
    return _Inspected("picture", suffix, width, height, turn=orientation not in (0, 1))


def _turn_upright(path: Path) -> None:
    """Store a photo as its EXIF orientation says it is seen (ffmpeg ignores the tag)."""
    with Image.open(path) as picture:
        kind = picture.format or "PNG"
        upright = ImageOps.exif_transpose(picture)
        options: dict[str, object] = {"quality": 95} if kind == "JPEG" else {}
        if kind == "WEBP":
            options = {"lossless": True}
        upright.save(path, format=kind, **options)


async def _check_video(
    path: Path, data: dict[str, object], suffix: str, limits: LimitsConfig
) -> _Inspected:
    streams = data.get("streams")
    streams = streams if isinstance(streams, list) else []
    pictures = [
        s for s in streams
        if isinstance(s, dict) and s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
    ]  # fmt: skip
    sound = any(isinstance(s, dict) and s.get("codec_type") == "audio" for s in streams)
    if not pictures:
        if sound:
            raise MediaProblem(f"has no picture, only sound; {WANTED} is needed")
        raise MediaProblem("holds no picture")
    stream = pictures[0]
    width, height = _check_sides(_int(stream.get("width")), _int(stream.get("height")), limits)
    seconds = _duration(data)
    if seconds is None or seconds <= 0:
        raise MediaProblem("is damaged: it has no length that can be measured")
    if seconds > limits.max_media_seconds:
        raise MediaProblem(
            f"lasts {_length(seconds)}; a clip may last at most "
            f"{_length(limits.max_media_seconds)} ([limits] max_media_seconds): trim it"
        )
    await _decode_keyframes(path)
    if _turned(stream):
        width, height = height, width
    return _Inspected("video", suffix, width, height, seconds, sound)


async def _decode_keyframes(path: Path) -> None:
    """Every keyframe of the clip's picture, decoded through to the end; any error stops it."""
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-skip_frame",
            "nokey", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]  # fmt: skip
    try:
        await run_program(argv, what="ffmpeg", timeout=300)
    except MediaError as exc:
        lines = exc.detail.strip().splitlines()
        # ffmpeg's last words, without its "[h264 @ 0x55…]" prefix
        detail = _LOG_PREFIX.sub("", lines[-1]).strip().rstrip(".")[:120] if lines else ""
        raise MediaProblem("is damaged: its picture cannot be decoded"
                           + (f" ({detail})" if detail else "")) from None  # fmt: skip


def _check_sides(width: int, height: int, limits: LimitsConfig) -> tuple[int, int]:
    if min(width, height) < limits.image_min_side:
        raise MediaProblem(f"is {width}×{height} px; at least {limits.image_min_side} px a side "
                           "is needed")  # fmt: skip
    if max(width, height) > MEDIA_MAX_SIDE:
        raise MediaProblem(f"is {width}×{height} px; at most {MEDIA_MAX_SIDE} px a side is "
                           "accepted: scale it down")  # fmt: skip
    return width, height


def _turned(stream: dict[str, object]) -> bool:
    """A phone's clip recorded sideways carries a rotation, which ffmpeg applies."""
    for side in stream.get("side_data_list") or []:  # type: ignore[attr-defined]
        if isinstance(side, dict) and abs(_int(side.get("rotation"))) in (90, 270):
            return True
    tags = stream.get("tags")
    return isinstance(tags, dict) and str(tags.get("rotate", "0")) in ("90", "270", "-90")


def _duration(data: dict[str, object]) -> float | None:
    fmt = data.get("format")
    value = fmt.get("duration") if isinstance(fmt, dict) else None
    try:
        return float(str(value)) if value is not None else None
    except ValueError:
        return None


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{size / 1024:.0f} KB"


def _length(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error) or type(error).__name__
