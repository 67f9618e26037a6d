UPDATE {schema}.tasks SET state = 'running', attempts = attempts + 1,
    lease_token = lease_token + 1, owner = $1::text, lease_until = $2::timestamptz,
    started_at = floor(extract(epoch FROM $4::timestamptz) * 1000)::bigint
WHERE id = ANY(ARRAY(SELECT id FROM {schema}.tasks
            WHERE queue = $3::text AND state = 'pending' AND run_at <= $4::timestamptz
              AND NOT EXISTS (SELECT 1 FROM {schema}.paused_queues WHERE queue = $3::text)
              AND (run_at, id) > ($6::timestamptz, $7::bigint)
            ORDER BY run_at, id LIMIT $5::bigint FOR UPDATE SKIP LOCKED))
RETURNING id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at, run_at
