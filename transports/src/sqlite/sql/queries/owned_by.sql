SELECT id, queue, payload, attempts, errors, crashes, lease_token, owner, lease_until, created_at
 FROM tasks WHERE owner = ?1 AND state = 'running' ORDER BY id
