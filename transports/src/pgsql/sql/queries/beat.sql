INSERT INTO {schema}.masters (id, record, expires_at) VALUES ($1::text, $2::text, $3::timestamptz)
ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, expires_at = EXCLUDED.expires_at
