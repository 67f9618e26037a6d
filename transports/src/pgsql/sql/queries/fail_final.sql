-- A failed task's run_at becomes the time it failed ($1), what listings filter on.
UPDATE {schema}.tasks SET state = 'failed',
    run_at = $1::timestamptz, errors = errors + $2::integer,
    crashes = crashes + $3::integer, last_error = $4::text, owner = NULL, lease_until = NULL,
    history = history || jsonb_build_array(jsonb_build_object('attempt', attempts,
        'owner', owner, 'outcome', $5::text, 'reason', $4::text, 'started_at', started_at,
        'finished_at', $6::bigint))
WHERE id = $7 AND lease_token = $8 AND state = 'running'
