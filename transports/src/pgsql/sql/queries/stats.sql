WITH s AS (SELECT queue,
       count(*) FILTER (WHERE state = 'pending' AND run_at <= $1::timestamptz) AS ready,
       count(*) FILTER (WHERE state = 'pending' AND run_at > $1::timestamptz) AS delayed,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       min(created_at) FILTER (WHERE state = 'pending') AS oldest
    FROM {schema}.tasks WHERE state <> 'done' GROUP BY queue)
SELECT COALESCE(s.queue, p.queue) AS queue, COALESCE(s.ready, 0), COALESCE(s.delayed, 0),
       COALESCE(s.running, 0), COALESCE(s.failed, 0), s.oldest, p.queue IS NOT NULL
FROM s FULL JOIN {schema}.paused_queues AS p ON p.queue = s.queue
ORDER BY 1
