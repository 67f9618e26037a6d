INSERT INTO {schema}.paused_schedules (id) VALUES ($1::text) ON CONFLICT DO NOTHING
