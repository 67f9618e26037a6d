WITH k AS (INSERT INTO {schema}.idempotency_keys (key, task_id, created_at)
    VALUES ($6::text, nextval('{schema}.tasks_id_seq'), $4::timestamptz)
    ON CONFLICT (key) DO NOTHING RETURNING task_id),
t AS (INSERT INTO {schema}.tasks (id, queue, payload, state, run_at, created_at)
    SELECT task_id, $1::text, $2::text::json, 'pending', $3::timestamptz, $4::timestamptz
    FROM k RETURNING id, queue)
SELECT id, pg_notify($5::text, queue) FROM t
