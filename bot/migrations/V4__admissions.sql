-- Admissions and usage (issue 21). Every time a render is let into the queue (a new job from
-- /render or the paste form, later a retry or a draft) or a scene is regenerated, one row is
-- written in the same transaction that checked the limits, so two processes sharing this file
-- cannot both take the last place. The rate windows, the image budgets and /usage are counted
-- from these rows, never from memory. No foreign key to jobs: the record of who used what
-- outlives the job (forgotten, or removed after [storage] keep_days).
CREATE TABLE admissions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,      -- 'render' (a new job) or 'revision' (a scene made again)
    job_id      INTEGER NOT NULL,
    guild_id    INTEGER,
    user_id     INTEGER NOT NULL,   -- the job's requester
    at          REAL NOT NULL,
    scenes      INTEGER NOT NULL,   -- scenes to render
    images      INTEGER NOT NULL,   -- paid images it needs (not in the cache): held until
    settled_at  REAL                -- the run it was for has ended (then the real requests count)
);
CREATE INDEX admissions_by_user ON admissions (user_id, at);
CREATE INDEX admissions_by_guild ON admissions (guild_id, at);
CREATE INDEX admissions_open ON admissions (job_id) WHERE settled_at IS NULL;

-- Each paid image request, as it was made (a cached image is free and is not here).
CREATE TABLE image_requests (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id    INTEGER NOT NULL,
    guild_id  INTEGER,
    user_id   INTEGER NOT NULL,
    scene     INTEGER NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX image_requests_by_guild ON image_requests (guild_id, at);
CREATE INDEX image_requests_by_user ON image_requests (user_id, at);
CREATE INDEX image_requests_by_job ON image_requests (job_id, at);

-- Messages the bot posted for a job besides its progress message and the scene messages
-- (kept in `scenes`): replaced scene versions, storyboards, videos, notices. /forget deletes
-- or blanks them.
CREATE TABLE job_messages (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    channel_id  INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    kind        TEXT NOT NULL,      -- 'image' (deleted by /forget), 'video' or 'notice' (blanked)
    PRIMARY KEY (job_id, message_id)
);

-- Every artefact a job's renders used (each version of a regenerated scene; a scene's row
-- holds only the latest), so /forget can remove them from the cache.
CREATE TABLE job_files (
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    PRIMARY KEY (job_id, path)
);
CREATE INDEX job_files_by_path ON job_files (path);
INSERT OR IGNORE INTO job_files (job_id, path)
    SELECT job_id, audio FROM scenes WHERE audio IS NOT NULL
    UNION SELECT job_id, image FROM scenes WHERE image IS NOT NULL
    UNION SELECT job_id, clip FROM scenes WHERE clip IS NOT NULL;

-- Jobs from before: their renders count in /usage (they need no reservation any more).
INSERT INTO admissions (kind, job_id, guild_id, user_id, at, scenes, images, settled_at)
    SELECT 'render', id, guild_id, user_id, created_at, scene_count, 0, created_at FROM jobs;
