SELECT id FROM paused_schedules ORDER BY id
