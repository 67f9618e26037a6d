WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)),
done AS (DELETE FROM {schema}.tasks AS t
    WHERE t.id = ANY($5::bigint[]) AND t.state = (SELECT 'running'::text)
      AND (t.id, t.lease_token) IN (SELECT * FROM unnest($5::bigint[], $6::bigint[]))
    RETURNING t.*),
kept AS (INSERT INTO {schema}.completed (id, queue, payload, result, created_at, completed_at,
    attempts, errors, crashes, last_error, history, owner, started_at)
    SELECT d.id, d.queue, d.payload, NULL::json, d.created_at, $4::timestamptz, d.attempts,
        d.errors, d.crashes, d.last_error, d.history, d.owner, d.started_at
    FROM done AS d),
next AS (UPDATE {schema}.tasks SET state = 'running', attempts = attempts + 1,
    lease_token = lease_token + 1, owner = $1::text, lease_until = $2::timestamptz,
    started_at = floor(extract(epoch FROM $4::timestamptz) * 1000)::bigint
WHERE id = ANY(ARRAY(SELECT id FROM {schema}.tasks
            WHERE queue = $3::text AND state = 'pending' AND run_at <= $4::timestamptz
              AND NOT EXISTS (SELECT 1 FROM {schema}.paused_queues WHERE queue = $3::text)
              AND (run_at, id) > ($8::timestamptz, $9::bigint)
            ORDER BY run_at, id LIMIT $7::bigint FOR UPDATE SKIP LOCKED))
RETURNING id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at, run_at)
SELECT * FROM next
UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM done
UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM cfg
