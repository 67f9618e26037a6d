SELECT id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at, run_at, owner, NULL::text
FROM {schema}.tasks WHERE state = 'failed' AND ($1::text IS NULL OR queue = $1::text)
ORDER BY id
