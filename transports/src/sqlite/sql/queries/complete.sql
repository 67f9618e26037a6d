-- The task is kept as done (run_at: when it completed) until prune_completed removes it.
UPDATE tasks SET state = 'done', run_at = ?3, result = ?4, owner = NULL, lease_until = NULL,
    history = json_insert(history, '$[#]', json_object('attempt', attempts,
        'owner', owner, 'outcome', 'done', 'started_at', started_at, 'finished_at', ?3))
 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'
