INSERT INTO masters (id, record, expires_at) VALUES (?1, ?2, ?3)
 ON CONFLICT (id) DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at
