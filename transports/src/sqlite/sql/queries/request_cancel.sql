INSERT INTO cancel_requests (id, attempt, requested_at) VALUES (?1, ?2, ?3)
 ON CONFLICT (id, attempt) DO UPDATE SET requested_at = excluded.requested_at
