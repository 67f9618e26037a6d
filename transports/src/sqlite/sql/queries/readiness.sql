SELECT EXISTS (SELECT 1 FROM tasks WHERE queue = CAST(?1 AS TEXT) AND state = 'pending' AND run_at <= ?2),
       (SELECT MIN(run_at) FROM tasks WHERE queue = CAST(?1 AS TEXT) AND state = 'pending' AND run_at > ?2)
