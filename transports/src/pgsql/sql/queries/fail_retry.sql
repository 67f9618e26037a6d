WITH t AS (UPDATE {schema}.tasks SET state = 'pending',
    run_at = COALESCE($1::timestamptz, run_at), errors = errors + $2::integer,
    crashes = crashes + $3::integer, last_error = $4::text, owner = NULL, lease_until = NULL,
    history = history || jsonb_build_array(jsonb_build_object('attempt', attempts,
        'owner', owner, 'outcome', $5::text, 'reason', $4::text, 'started_at', started_at,
        'finished_at', $6::bigint))
    WHERE id = $7 AND lease_token = $8 AND state = 'running'
    RETURNING queue)
SELECT pg_notify($9::text, queue) FROM t
