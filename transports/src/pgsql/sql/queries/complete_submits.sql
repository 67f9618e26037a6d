WITH t AS (INSERT INTO {schema}.tasks (queue, payload, state, run_at, created_at)
    SELECT n.queue, n.payload::json, 'pending', $3::timestamptz, $3::timestamptz
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(queue, payload, i)
    ORDER BY n.i
    RETURNING queue)
SELECT pg_notify($4::text, queue) FROM (SELECT DISTINCT queue FROM t) AS q
