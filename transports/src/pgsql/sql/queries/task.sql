SELECT id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at, run_at, owner, NULL::text
FROM {schema}.tasks WHERE id = $1::bigint
