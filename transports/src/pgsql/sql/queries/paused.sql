SELECT queue FROM {schema}.paused_queues ORDER BY queue
