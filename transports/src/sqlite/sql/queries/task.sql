SELECT id, queue, state, payload, attempts, errors, crashes, last_error, history, created_at,
       run_at, owner, result, started_at
 FROM tasks WHERE id = ?1
