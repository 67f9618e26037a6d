INSERT INTO paused_schedules (id, paused_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING
