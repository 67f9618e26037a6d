-- $3: now; $4: the result (JSON text or NULL). The task moves to `completed`.
WITH done AS (DELETE FROM {schema}.tasks WHERE id = $1 AND lease_token = $2 AND state = 'running'
    RETURNING *)
INSERT INTO {schema}.completed (id, queue, payload, result, created_at, completed_at, attempts,
    errors, crashes, last_error, history)
SELECT id, queue, payload, $4::text::json, created_at, $3::timestamptz, attempts, errors, crashes,
    last_error, history || jsonb_build_array(jsonb_build_object('attempt', attempts,
        'owner', owner, 'outcome', 'done'::text, 'started_at', started_at,
        'finished_at', floor(extract(epoch FROM $3::timestamptz) * 1000)::bigint))
FROM done
