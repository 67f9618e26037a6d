DELETE FROM cancel_requests WHERE id NOT IN (SELECT id FROM tasks WHERE state = 'running')
