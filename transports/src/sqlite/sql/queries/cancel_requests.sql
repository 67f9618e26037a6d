SELECT id, attempt FROM cancel_requests WHERE requested_at >= ?1 ORDER BY id, attempt
