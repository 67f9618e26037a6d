-- Every queue with completed tasks, one index probe each (a loose scan of completed_by_queue).
WITH RECURSIVE queues(name) AS (
    (SELECT queue FROM {schema}.completed ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT queue FROM {schema}.completed WHERE queue > queues.name ORDER BY queue LIMIT 1)
    FROM queues WHERE queues.name IS NOT NULL
)
SELECT name FROM queues WHERE name IS NOT NULL
