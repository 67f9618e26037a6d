-- The keys of operators' runs ("run now") used before ?1.
DELETE FROM idempotency_keys WHERE key > 'manual:' AND key < 'manual;' AND created_at < ?1
