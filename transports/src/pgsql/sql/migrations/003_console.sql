CREATE TABLE {schema}.paused_queues (
    queue TEXT COLLATE "C" PRIMARY KEY
);
CREATE TABLE {schema}.masters (
    id TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
-- A failed task's run_at is now the time it failed (what listings filter on): the time its
-- last attempt finished, for the tasks that failed before.
UPDATE {schema}.tasks
SET run_at = 'epoch'::timestamptz + (history -> -1 ->> 'finished_at')::bigint * interval '1 millisecond'
WHERE state = 'failed' AND jsonb_typeof(history -> -1 -> 'finished_at') = 'number';
