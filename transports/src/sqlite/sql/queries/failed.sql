SELECT id, queue, state, payload, attempts, errors, crashes, last_error, history, created_at,
       run_at, owner, result, started_at
 FROM tasks WHERE state = 'failed' AND (?1 IS NULL OR queue = ?1) ORDER BY id
