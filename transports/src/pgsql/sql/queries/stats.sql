SELECT queue,
       count(*) FILTER (WHERE state = 'pending' AND run_at <= $1::timestamptz),
       count(*) FILTER (WHERE state = 'pending' AND run_at > $1::timestamptz),
       count(*) FILTER (WHERE state = 'running'),
       count(*) FILTER (WHERE state = 'failed'),
       min(created_at) FILTER (WHERE state = 'pending')
FROM {schema}.tasks WHERE state <> 'done' GROUP BY queue ORDER BY queue
