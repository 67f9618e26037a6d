SELECT min(run_at), EXISTS (SELECT 1 FROM {schema}.paused_queues WHERE queue = $1::text)
FROM {schema}.tasks WHERE queue = $1::text AND state = 'pending'
