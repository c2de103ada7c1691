-- Stage timings (issue 17). What this bot measured on its own renders, one row per sample:
-- each image made (seconds), the speech of a render (seconds per character), the voice's pace
-- (seconds of narration per character), each clip encoded (seconds per second of clip), the
-- join and sound pass (seconds). The time-left estimates use the median of
-- each stage's latest samples (`bot/estimate.py`, `pipeline/estimate.py`); older rows are
-- removed as new ones come in.
CREATE TABLE stage_timings (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    stage  TEXT NOT NULL,   -- image, speech, voice, encode, finish
    value  REAL NOT NULL,
    at     REAL NOT NULL
);
CREATE INDEX stage_timings_by_stage ON stage_timings (stage, id);
