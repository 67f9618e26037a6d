SELECT queue,
       COALESCE(SUM(state = 'pending' AND run_at <= ?1), 0),
       COALESCE(SUM(state = 'pending' AND run_at > ?1), 0),
       COALESCE(SUM(state = 'running'), 0),
       COALESCE(SUM(state = 'failed'), 0),
       MIN(CASE WHEN state = 'pending' THEN created_at END)
 FROM tasks WHERE state != 'done' GROUP BY queue ORDER BY queue
