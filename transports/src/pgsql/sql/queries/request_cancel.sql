WITH pruned AS (DELETE FROM {schema}.cancel_requests
    WHERE requested_at < $4 AND NOT (id = $1 AND attempt = $2))
INSERT INTO {schema}.cancel_requests (id, attempt, requested_at) VALUES ($1, $2, $3)
ON CONFLICT (id, attempt) DO UPDATE SET requested_at = excluded.requested_at
