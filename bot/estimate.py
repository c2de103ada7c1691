"""What this bot measured on its renders, kept in the store: the rolling median of each stage's
latest samples (`[queue] timing_samples`), which the time-left estimates are made from
(`pipeline/estimate.py` is the model; this module only keeps the numbers).

    a finished render's events ──measure()──► samples ──record()──► stage_timings (SQLite)
    stage_timings ──rates()──► Rates (the median of each stage's last N samples)

A fresh store has no samples: its first render is estimated from `Rates()`'s defaults, and
every render after it from what the ones before it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from pipeline.estimate import Rates, Speed, median_rates

from .store import Store

__all__ = ["StageTimings"]

log = logging.getLogger(__name__)


class StageTimings:
    def __init__(self, store: Store, *, samples: int = 20) -> None:
        self.store = store
        self.samples = samples
        self._rates: Rates | None = None

    async def rates(self) -> Rates:
        """The median of each stage's latest samples (read once, then kept up to date)."""
        if self._rates is None:
            self._rates = median_rates(await self._latest())
        return self._rates

    async def record(self, samples: Mapping[Speed, Sequence[float]]) -> Rates:
        """Add one render's samples (each stage keeps only its latest `samples`)."""
        now = time.time()
        rows = [(speed.value, float(v), now) for speed, values in samples.items()
                for v in values[-self.samples :] if v >= 0]  # fmt: skip
        if rows:
            async with self.store.transaction() as db:
                await db.executemany(
                    "INSERT INTO stage_timings (stage, value, at) VALUES (?, ?, ?)", rows
                )
                for speed in {row[0] for row in rows}:
                    await db.execute(
                        "DELETE FROM stage_timings WHERE stage = ? AND id NOT IN"
                        " (SELECT id FROM stage_timings WHERE stage = ? ORDER BY id DESC"
                        " LIMIT ?)",
                        (speed, speed, self.samples),
                    )
        self._rates = median_rates(await self._latest())
        log.debug("stage speeds now %s", self._rates)
        return self._rates

    async def _latest(self) -> dict[Speed, list[float]]:
        rows = await self.store.fetch("SELECT stage, value FROM stage_timings ORDER BY id")
        found: dict[Speed, list[float]] = {}
        known = {s.value for s in Speed}
        for stage, value in rows:
            if stage in known:
                found.setdefault(Speed(stage), []).append(float(value))
        return {speed: values[-self.samples :] for speed, values in found.items()}
