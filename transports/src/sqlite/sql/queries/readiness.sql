SELECT EXISTS (SELECT 1 FROM tasks WHERE queue = CAST(?1 AS TEXT) AND state = 'pending' AND run_at <= ?2)
       AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = CAST(?1 AS TEXT)),
       (SELECT MIN(run_at) FROM tasks WHERE queue = CAST(?1 AS TEXT) AND state = 'pending' AND run_at > ?2)
