-- $1: the recording's name, $2: now. One row when the recording is new, none when made already.
INSERT INTO {schema}.history_recordings (name, recorded_at) VALUES ($1, $2) ON CONFLICT DO NOTHING
