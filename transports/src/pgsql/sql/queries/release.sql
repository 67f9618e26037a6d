-- A released task keeps its place: it was due, so its run_at is kept (at most now).
WITH t AS (UPDATE {schema}.tasks SET state = 'pending', run_at = LEAST(run_at, $1::timestamptz),
    attempts = attempts - 1, owner = NULL, lease_until = NULL,
    history = history || jsonb_build_array(jsonb_build_object('attempt', attempts,
        'owner', owner, 'outcome', 'released'::text, 'reason', $2::text,
        'started_at', started_at, 'finished_at', $3::bigint))
    WHERE id = $4 AND lease_token = $5 AND state = 'running'
    RETURNING queue)
SELECT pg_notify($6::text, queue) FROM t
