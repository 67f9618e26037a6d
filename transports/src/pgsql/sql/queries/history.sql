SELECT queue, minute, succeeded, failed, retried, crashed,
       run_buckets, run_sum_ms, wait_buckets, wait_sum_ms
FROM {schema}.history
WHERE minute >= $1 AND ($2::text IS NULL OR queue = $2)
ORDER BY queue, minute
