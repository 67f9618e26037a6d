WITH done AS (DELETE FROM {schema}.tasks AS t
    WHERE t.id = ANY($6::bigint[]) AND t.state = (SELECT 'running'::text)
      AND (t.id, t.lease_token) IN (SELECT * FROM unnest($6::bigint[], $7::bigint[]))
    RETURNING t.*),
kept AS (INSERT INTO {schema}.completed (id, queue, payload, result, created_at, completed_at,
    attempts, errors, crashes, last_error, history, owner, started_at)
    SELECT d.id, d.queue, d.payload, r.result::json, d.created_at, $4::timestamptz, d.attempts,
        d.errors, d.crashes, d.last_error, d.history, d.owner, d.started_at
    FROM done AS d LEFT JOIN unnest($6::bigint[], $21::text[]) AS r(id, result) ON r.id = d.id),
submitted AS (INSERT INTO {schema}.tasks (queue, payload, state, run_at, created_at)
    SELECT n.queue, n.payload::json, 'pending', $4::timestamptz, $4::timestamptz
    FROM unnest($8::bigint[], $9::text[], $10::text[]) WITH ORDINALITY AS n(task, queue, payload, i)
    WHERE n.task IN (SELECT id FROM done)
    ORDER BY n.i
    RETURNING queue),
failed AS (UPDATE {schema}.tasks AS t SET
    state = CASE WHEN f.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
    run_at = COALESCE(f.retry_at, $4::timestamptz), errors = t.errors + (f.outcome = 'error')::integer,
    crashes = t.crashes + (f.outcome = 'crash')::integer, last_error = f.reason, owner = NULL,
    lease_until = NULL,
    history = t.history || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
        'owner', t.owner, 'outcome', f.outcome, 'reason', f.reason, 'started_at', t.started_at,
        'finished_at', $19::bigint))
    FROM unnest($11::bigint[], $12::bigint[], $13::timestamptz[], $14::text[], $15::text[])
        AS f(id, token, retry_at, outcome, reason)
    WHERE t.id = ANY($11::bigint[]) AND t.id = f.id AND t.lease_token = f.token
      AND t.state = (SELECT 'running'::text)
    RETURNING t.id, t.queue, f.retry_at),
released AS (UPDATE {schema}.tasks AS t SET state = 'pending',
    run_at = LEAST(t.run_at, $4::timestamptz),
    attempts = t.attempts - 1, owner = NULL, lease_until = NULL,
    history = t.history || jsonb_build_array(jsonb_build_object('attempt', t.attempts,
        'owner', t.owner, 'outcome', 'released'::text, 'reason', r.reason,
        'started_at', t.started_at, 'finished_at', $19::bigint))
    FROM unnest($16::bigint[], $17::bigint[], $18::text[]) AS r(id, token, reason)
    WHERE t.id = ANY($16::bigint[]) AND t.id = r.id AND t.lease_token = r.token
      AND t.state = (SELECT 'running'::text)
    RETURNING t.id, t.queue),
woken AS (SELECT pg_notify($20::text, q.queue) FROM (SELECT queue FROM submitted
    UNION SELECT queue FROM failed WHERE retry_at IS NOT NULL
    UNION SELECT queue FROM released) AS q),
next AS (UPDATE {schema}.tasks SET state = 'running', attempts = attempts + 1,
    lease_token = lease_token + 1, owner = $1::text, lease_until = $2::timestamptz,
    started_at = floor(extract(epoch FROM $4::timestamptz) * 1000)::bigint
WHERE id = ANY(ARRAY(SELECT id FROM {schema}.tasks
            WHERE queue = $3::text AND state = 'pending' AND run_at <= $4::timestamptz
              AND NOT EXISTS (SELECT 1 FROM {schema}.paused_queues WHERE queue = $3::text)
              AND (run_at, id) > ($22::timestamptz, $23::bigint)
            ORDER BY run_at, id LIMIT $5::bigint FOR UPDATE SKIP LOCKED))
RETURNING id, queue, payload::text, attempts, errors, crashes, lease_token, owner, lease_until, created_at, run_at)
SELECT * FROM next
UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM done
UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM failed
UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM released
UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM woken
