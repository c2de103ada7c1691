"""The outputs folder: a job's joined video waits there until it is delivered.

Its files, per job:

    <data_dir>/outputs/job-<id>.mp4        the video (kept if it could not be posted)
    <data_dir>/outputs/job-<id>.fit.mp4    a re-encode made to fit the upload limit
    <data_dir>/outputs/.job-<id>.*         temporary files of a render that was killed
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

__all__ = ["job_video", "remove_outputs"]

log = logging.getLogger(__name__)


def remove_outputs(outputs: Path, job_id: int) -> list[Path]:
    """Remove a delivered job's files from the outputs folder: its video, a re-encode made to
    fit the upload limit, and the temporary files a killed render may have left
    (`.job-<id>.*`). What was removed (a file that cannot be removed is logged and kept)."""
    video = job_video(outputs, job_id)
    found = [video, video.with_name(f"{video.stem}.fit.mp4"),
             *outputs.glob(f".job-{job_id}.*")]  # fmt: skip
    removed: list[Path] = []
    for path in found:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
        except OSError as exc:
            log.warning("job %d: could not remove %s: %s", job_id, path.name, exc)
            continue
        removed.append(path)
    return removed


def job_video(outputs: Path, job_id: int) -> Path:
    """Where a job's joined video is written, until it is delivered."""
    return outputs / f"job-{job_id}.mp4"
