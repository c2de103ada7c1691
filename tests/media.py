"""ffprobe-based checks shared by the tests."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Probe:
    duration: float
    streams: list[dict[str, Any]]
    tags: dict[str, str]

    def stream(self, kind: str) -> dict[str, Any]:
        matches = [s for s in self.streams if s["codec_type"] == kind]
        assert len(matches) == 1, f"expected one {kind} stream, found {len(matches)}"
        return matches[0]


def ffprobe(path: Path) -> Probe:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
         str(path)],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    data = json.loads(out)
    return Probe(
        duration=float(data["format"]["duration"]),
        streams=data["streams"],
        tags=data["format"].get("tags", {}),
    )


def packet_count(path: Path, stream: str = "v:0") -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", stream, "-count_packets",
         "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
        capture_output=True, check=True, timeout=60, text=True,
    ).stdout  # fmt: skip
    return int(out.strip())
