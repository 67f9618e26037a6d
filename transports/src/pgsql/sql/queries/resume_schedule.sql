DELETE FROM {schema}.paused_schedules WHERE id = $1::text
