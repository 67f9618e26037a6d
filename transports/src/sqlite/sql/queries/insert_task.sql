INSERT INTO tasks (queue, payload, state, run_at, created_at) VALUES (?1, ?2, 'pending', ?3, ?4)
