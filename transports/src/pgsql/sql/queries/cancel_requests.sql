SELECT id, attempt FROM {schema}.cancel_requests WHERE requested_at >= $1 ORDER BY id, attempt
