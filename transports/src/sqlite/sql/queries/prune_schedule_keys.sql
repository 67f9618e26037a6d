DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM (
        SELECT key, row_number() OVER (
            PARTITION BY substr(key, 1, length(key) - 16) ORDER BY key DESC
        ) AS newest
        FROM idempotency_keys WHERE key > 'schedule:' AND key < 'schedule;'
    ) WHERE newest > 1 AND CAST(substr(key, -16) AS INTEGER) < ?1
)
