DELETE FROM paused_schedules WHERE id = ?1
