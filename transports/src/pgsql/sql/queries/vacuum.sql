VACUUM (ANALYZE) {schema}.tasks, {schema}.idempotency_keys
