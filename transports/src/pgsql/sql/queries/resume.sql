-- Resuming wakes the queue's waiters (a paused queue's `wait` ignores its ready tasks).
WITH q AS (DELETE FROM {schema}.paused_queues WHERE queue = $1::text RETURNING queue)
SELECT pg_notify($2::text, queue) FROM q
