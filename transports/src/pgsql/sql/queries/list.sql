-- The head of a listing: `console.rs` appends the filter's conditions, `ORDER BY id` and the
-- `LIMIT` (keyset pagination: `id > $n` for the page after a given id).
SELECT id, queue, state, payload::text, attempts, errors, crashes, last_error, history::text, created_at, run_at, owner, NULL::text
FROM {schema}.tasks
