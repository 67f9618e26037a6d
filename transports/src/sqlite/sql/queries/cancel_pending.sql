UPDATE tasks SET state = 'failed', run_at = ?3, last_error = ?2, owner = NULL, lease_until = NULL,
    history = json_insert(history, '$[#]', json_object('attempt', attempts,
        'owner', '', 'outcome', 'cancelled', 'reason', ?2, 'finished_at', ?3))
 WHERE id = ?1 AND state = 'pending'
