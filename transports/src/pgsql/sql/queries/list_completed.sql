-- The head of a listing of completed tasks (`state = 'done'`): the `completed` table seen
-- with the columns of `list.sql`, so that `console.rs` appends the same conditions.
SELECT id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at, run_at, owner, result::text
FROM (SELECT id, queue, 'done'::text AS state, payload, attempts, errors, crashes, last_error,
             history, created_at, completed_at AS run_at, NULL::text AS owner, result
      FROM {schema}.completed) AS tasks
