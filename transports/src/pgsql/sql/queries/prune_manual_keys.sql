-- The keys of operators' runs ("run now") used before $1 (ms since the epoch).
DELETE FROM {schema}.idempotency_keys
WHERE key LIKE 'manual:%' AND created_at < to_timestamp($1::bigint / 1000.0)
