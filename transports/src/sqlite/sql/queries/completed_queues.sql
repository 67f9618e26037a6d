-- Every queue name, one index seek each (a skip scan of the claim-order index): what the
-- pruning of completed tasks walks, without reading every task.
WITH RECURSIVE queues(name) AS (
    SELECT MIN(queue) FROM tasks
    UNION ALL
    SELECT (SELECT MIN(queue) FROM tasks WHERE queue > queues.name) FROM queues
     WHERE queues.name IS NOT NULL
)
SELECT name FROM queues WHERE name IS NOT NULL
