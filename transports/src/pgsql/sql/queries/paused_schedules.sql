SELECT id FROM {schema}.paused_schedules ORDER BY id
