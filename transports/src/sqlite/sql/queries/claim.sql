UPDATE tasks SET state = 'running', attempts = attempts + 1, lease_token = lease_token + 1,
    owner = ?1, lease_until = ?2, started_at = ?4
 WHERE id = (SELECT id FROM tasks WHERE queue = CAST(?3 AS TEXT) AND state = 'pending' AND run_at <= ?4
               AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = CAST(?3 AS TEXT))
             ORDER BY run_at, id LIMIT 1)
 RETURNING id, queue, payload, attempts, errors, crashes, lease_token, owner, lease_until, created_at
