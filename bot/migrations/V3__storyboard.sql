-- Storyboard (issue 9). Which scene images the storyboard posted in a job's thread shows (a
-- digest of their paths): a resumed render does not post the same storyboard again, a
-- regenerated scene gets a new one.
ALTER TABLE jobs ADD COLUMN storyboard TEXT;
