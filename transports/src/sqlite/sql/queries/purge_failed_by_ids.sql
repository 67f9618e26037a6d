DELETE FROM tasks WHERE state = 'failed' AND id IN (SELECT value FROM json_each(?1))
