-- Scene review (issue 5). A scene's `version` goes up each time it is regenerated or its
-- prompt is edited; these record which version its thread message shows and which version the
-- last delivered video used (to say which scenes changed), and how many videos a job has had.
ALTER TABLE scenes ADD COLUMN posted_version INTEGER;     -- shown on image_message_id
ALTER TABLE scenes ADD COLUMN delivered_version INTEGER;  -- in the last delivered video
ALTER TABLE jobs ADD COLUMN videos INTEGER NOT NULL DEFAULT 0;

-- Rows from before this migration: what is posted and delivered is version 1.
UPDATE scenes SET posted_version = version WHERE image_message_id IS NOT NULL;
UPDATE scenes SET delivered_version = version
    WHERE job_id IN (SELECT id FROM jobs WHERE state = 'done');
UPDATE jobs SET videos = 1 WHERE state = 'done';
