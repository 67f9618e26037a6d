SELECT COALESCE(SUM(state = 'pending' AND run_at <= ?1), 0),
       COALESCE(SUM(state = 'pending' AND run_at > ?1), 0),
       COALESCE(SUM(state = 'running'), 0),
       COALESCE(SUM(state = 'failed'), 0),
       MIN(CASE WHEN state = 'pending' AND run_at > ?1 THEN run_at END)
 FROM tasks WHERE queue = CAST(?2 AS TEXT) AND state IN ('pending', 'running', 'failed')
