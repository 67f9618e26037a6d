-- The names of the history recordings made in the last day: a master that repeats a
-- recording (its reply was lost after the commit) adds it once.
CREATE TABLE {schema}.history_recordings (
    name TEXT PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL
);
