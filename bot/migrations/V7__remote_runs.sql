-- Runs handed to `reelbot worker` processes ([queue] backend = "arq", issue 18). One row per job
-- whose run is in the render queue on Redis: its name (the keys and the event stream in Redis),
-- its attempt (a run whose worker died is handed to another as the next attempt) and the id of
-- the last stream message the bot has read, so that a restarted bot reads on from there and
-- loses no event. The row goes when the run is over.
CREATE TABLE remote_runs (
    job_id      INTEGER PRIMARY KEY,
    run         TEXT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 1,
    last_event  TEXT NOT NULL DEFAULT '0-0'
);
