DELETE FROM tasks WHERE queue = ?1 AND state = ?2
