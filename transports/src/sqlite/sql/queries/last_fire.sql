SELECT key FROM idempotency_keys WHERE key > ?1 AND key < ?2 ORDER BY key DESC LIMIT 1
