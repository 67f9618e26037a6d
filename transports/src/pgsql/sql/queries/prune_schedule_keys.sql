DELETE FROM {schema}.idempotency_keys WHERE key IN (
    SELECT key FROM (
        SELECT key, row_number() OVER (
            PARTITION BY left(key, length(key) - 16) ORDER BY right(key, 16) DESC
        ) AS newest
        FROM {schema}.idempotency_keys WHERE key LIKE 'schedule:%'
    ) AS k WHERE newest > 1 AND right(key, 16)::bigint < $1::bigint
)
