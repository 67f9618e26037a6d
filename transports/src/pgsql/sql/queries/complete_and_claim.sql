WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS v),
done AS (DELETE FROM {schema}.tasks WHERE id = $5 AND lease_token = $6 AND state = 'running' RETURNING *),
kept AS (INSERT INTO {schema}.completed (id, queue, payload, result, created_at, completed_at,
    attempts, errors, crashes, last_error, history, owner, started_at)
    SELECT d.id, d.queue, d.payload, NULL::json, d.created_at, $4::timestamptz, d.attempts,
        d.errors, d.crashes, d.last_error, d.history, d.owner, d.started_at
    FROM done AS d),
next AS (UPDATE {schema}.tasks SET state = 'running', attempts = attempts + 1,
    lease_token = lease_token + 1, owner = $1::text, lease_until = $2::timestamptz,
    started_at = floor(extract(epoch FROM $4::timestamptz) * 1000)::bigint
WHERE id = (SELECT id FROM {schema}.tasks
            WHERE queue = $3::text AND state = 'pending' AND run_at <= $4::timestamptz
              AND NOT EXISTS (SELECT 1 FROM {schema}.paused_queues WHERE queue = $3::text)
            ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at)
SELECT next.*, (SELECT count(*) FROM done), (SELECT v FROM cfg)
FROM (SELECT 1) AS one LEFT JOIN next ON true
