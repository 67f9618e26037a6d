INSERT INTO idempotency_keys (key, task_id, created_at) VALUES (?1, ?2, ?3)
 ON CONFLICT (key) DO NOTHING
