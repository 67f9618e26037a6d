SELECT id, queue, payload, attempts, errors, crashes, lease_token, owner, lease_until, created_at
 FROM tasks WHERE state = 'running' AND owner = ?1
