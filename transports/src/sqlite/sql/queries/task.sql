SELECT id, queue, state, payload, attempts, errors, crashes, last_error, history, created_at,
       run_at, owner
 FROM tasks WHERE id = ?1 AND state != 'done'
