WITH t AS (INSERT INTO {schema}.tasks (queue, payload, state, run_at, created_at)
    VALUES ($1::text, $2::text::json, 'pending', $3::timestamptz, $4::timestamptz)
    RETURNING id, queue)
SELECT id, pg_notify($5::text, queue) FROM t
