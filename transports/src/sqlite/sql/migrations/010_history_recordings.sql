-- The names of the history recordings made in the last day: a master that repeats a
-- recording (its first try failed after it was applied) adds it once.
CREATE TABLE history_recordings (
    name TEXT PRIMARY KEY,
    recorded_at INTEGER NOT NULL
) WITHOUT ROWID;
