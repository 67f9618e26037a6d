WITH t AS (INSERT INTO {schema}.tasks (queue, payload, state, run_at, created_at)
    SELECT n.queue, n.payload::json, 'pending', $3::timestamptz, $4::timestamptz
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS n(queue, payload, i)
    ORDER BY n.i
    RETURNING id, queue),
woken AS (SELECT pg_notify($5::text, q.queue) FROM (SELECT DISTINCT queue FROM t) AS q)
SELECT array_agg(id ORDER BY id), (SELECT count(*) FROM woken) FROM t
