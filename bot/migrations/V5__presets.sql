-- Presets (issue 17): `/settings`. A server's defaults (set by its managers and moderators)
-- and a person's own (they follow that person to every server), one row per setting. What a
-- render uses: its `/render` options, else the person's presets, else the server's, else the
-- configuration. `music` names an uploaded track in the artefact cache; the cache keeps it
-- (pinned) while a preset names it.
CREATE TABLE presets (
    level     TEXT NOT NULL,      -- 'server' or 'user'
    owner_id  INTEGER NOT NULL,   -- the server's id, or the person's
    name      TEXT NOT NULL,      -- voice, aspect, captions, review, style, negative, music
    value     TEXT NOT NULL,
    set_by    INTEGER NOT NULL,
    set_at    REAL NOT NULL,
    PRIMARY KEY (level, owner_id, name)
);
