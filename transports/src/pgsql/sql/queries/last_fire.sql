SELECT key FROM {schema}.idempotency_keys WHERE key > $1::text AND key < $2::text
ORDER BY key DESC LIMIT 1
