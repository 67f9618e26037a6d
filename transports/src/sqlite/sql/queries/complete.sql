DELETE FROM tasks WHERE id = ?1 AND lease_token = ?2 AND state = 'running'
