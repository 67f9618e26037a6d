UPDATE tasks SET state = ?1, run_at = COALESCE(?2, ?7), errors = errors + ?3,
    crashes = crashes + ?4, last_error = ?5, owner = NULL, lease_until = NULL,
    history = json_insert(history, '$[#]', json_object('attempt', attempts,
        'owner', owner, 'outcome', ?6, 'reason', ?5, 'started_at', started_at,
        'finished_at', ?7))
 WHERE id = ?8 AND lease_token = ?9 AND state = 'running'
