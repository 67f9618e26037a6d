-- The newest completed task of queue ?1 beyond the ?2 kept: it and every older one go.
SELECT run_at, id FROM tasks WHERE queue = ?1 AND state = 'done'
 ORDER BY run_at DESC, id DESC LIMIT 1 OFFSET ?2
