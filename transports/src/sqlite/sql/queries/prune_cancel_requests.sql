DELETE FROM cancel_requests WHERE requested_at < ?1
