INSERT INTO {schema}.paused_queues (queue) VALUES ($1::text) ON CONFLICT DO NOTHING
