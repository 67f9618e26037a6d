-- A released task keeps its place: it was due, so its run_at is kept (at most now).
UPDATE tasks SET state = 'pending', run_at = MIN(run_at, ?1), attempts = attempts - 1,
    owner = NULL, lease_until = NULL,
    history = json_insert(history, '$[#]', json_object('attempt', attempts,
        'owner', owner, 'outcome', 'released', 'reason', ?2, 'started_at', started_at,
        'finished_at', ?1))
 WHERE id = ?3 AND lease_token = ?4 AND state = 'running'
