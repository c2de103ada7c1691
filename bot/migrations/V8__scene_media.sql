-- Own media (issue 20): "Use my picture" in the review thread. The picture uploaded for a
-- scene (checked, in the artifact cache; JSON: path, kind, width, height), used instead of
-- what the script says; NULL: as the script says.
ALTER TABLE scenes ADD COLUMN media TEXT;
