-- $3: now; $4: the result (JSON text or NULL). The task moves to `completed`.
WITH done AS (DELETE FROM {schema}.tasks WHERE id = $1 AND lease_token = $2 AND state = 'running'
    RETURNING *)
INSERT INTO {schema}.completed (id, queue, payload, result, created_at, completed_at, attempts,
    errors, crashes, last_error, history, owner, started_at)
SELECT id, queue, payload, $4::text::json, created_at, $3::timestamptz, attempts, errors, crashes,
    last_error, history, owner, started_at
FROM done
