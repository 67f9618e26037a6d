-- The head of a listing of completed tasks (`state = 'done'`): the `completed` table seen
-- with the columns of `list.sql`, so that `console.rs` appends the same conditions.
SELECT id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at, run_at, owner, result::text
FROM (SELECT id, queue, 'done'::text AS state, payload, attempts, errors, crashes, last_error,
             (CASE WHEN owner IS NULL THEN history ELSE history || jsonb_build_array(jsonb_build_object(
                     'attempt', attempts, 'owner', owner, 'outcome', 'done'::text, 'started_at', started_at,
                     'finished_at', floor(extract(epoch FROM completed_at) * 1000)::bigint)) END) AS history,
             created_at, completed_at AS run_at, NULL::text AS owner, result
      FROM {schema}.completed) AS tasks
