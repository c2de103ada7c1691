"""Facts about media files, measured with ffprobe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import MediaError
from .proc import run_program

__all__ = ["MediaInfo", "probe", "probe_duration"]


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    streams: list[dict[str, object]]

    def stream(self, kind: str) -> dict[str, object] | None:
        return next((s for s in self.streams if s.get("codec_type") == kind), None)


async def probe(path: Path) -> MediaInfo:
    out = await run_program(
        [
            "ffprobe", "-v", "error", "-print_format", "json",
            "-show_format", "-show_streams", str(path),
        ],
        what=f"ffprobe of {path.name}",
        timeout=60,
    )  # fmt: skip
    try:
        data = json.loads(out)
        duration = float(data["format"]["duration"])
    except (ValueError, KeyError) as exc:
        raise MediaError(f"{path.name} has no measurable duration") from exc
    return MediaInfo(duration=duration, streams=list(data.get("streams", [])))


async def probe_duration(path: Path) -> float:
    return (await probe(path)).duration
