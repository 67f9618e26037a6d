-- The head of a count of completed tasks: see `list_completed.sql`.
SELECT count(*)
FROM (SELECT id, queue, 'done'::text AS state, payload, last_error, completed_at AS run_at
      FROM {schema}.completed) AS tasks
