SELECT min(run_at) FROM {schema}.tasks WHERE queue = $1::text AND state = 'pending'
