INSERT INTO {schema}.history AS h
    (minute, queue, succeeded, failed, retried, crashed,
     run_buckets, run_sum_ms, wait_buckets, wait_sum_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (minute, queue) DO UPDATE SET
    succeeded = h.succeeded + excluded.succeeded,
    failed = h.failed + excluded.failed,
    retried = h.retried + excluded.retried,
    crashed = h.crashed + excluded.crashed,
    run_buckets = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(h.run_buckets, excluded.run_buckets) WITH ORDINALITY AS t(a, b, i)
        ORDER BY i),
    run_sum_ms = h.run_sum_ms + excluded.run_sum_ms,
    wait_buckets = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(h.wait_buckets, excluded.wait_buckets) WITH ORDINALITY AS t(a, b, i)
        ORDER BY i),
    wait_sum_ms = h.wait_sum_ms + excluded.wait_sum_ms
