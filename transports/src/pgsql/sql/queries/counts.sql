SELECT count(*) FILTER (WHERE state = 'pending' AND run_at <= $1::timestamptz),
       count(*) FILTER (WHERE state = 'pending' AND run_at > $1::timestamptz),
       count(*) FILTER (WHERE state = 'running'),
       count(*) FILTER (WHERE state = 'failed'),
       min(run_at) FILTER (WHERE state = 'pending' AND run_at > $1::timestamptz)
FROM {schema}.tasks WHERE queue = $2::text
