-- Render jobs and their scenes. A job's script and options are kept whole, so a restart can
-- rebuild exactly the same plan; per-scene overrides (seed, prompt) are what review changes.
CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id            INTEGER,
    channel_id          INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    script              TEXT NOT NULL,
    filename            TEXT NOT NULL,
    options             TEXT NOT NULL,          -- JSON: aspect, voice, title, review, ...
    title               TEXT NOT NULL,
    scene_count         INTEGER NOT NULL,
    state               TEXT NOT NULL,          -- queued, running, done, failed, cancelled
    created_at          REAL NOT NULL,
    started_at          REAL,
    finished_at         REAL,
    error               TEXT,
    output              TEXT,
    progress_message_id INTEGER,
    progress_posted_at  REAL,
    thread_id           INTEGER,
    events              TEXT                    -- JSON list of the last render's timed events
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_user ON jobs (user_id, state);

CREATE TABLE scenes (
    job_id           INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    seed             INTEGER NOT NULL,
    image_prompt     TEXT NOT NULL,
    negative_prompt  TEXT NOT NULL,
    audio            TEXT,
    image            TEXT,
    clip             TEXT,
    image_message_id INTEGER,
    approved         INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (job_id, number)
);
