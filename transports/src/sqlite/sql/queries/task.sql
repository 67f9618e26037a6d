SELECT id, queue, state, payload, attempts, errors, crashes, last_error, history, created_at,
       run_at, owner, result
 FROM tasks WHERE id = ?1
