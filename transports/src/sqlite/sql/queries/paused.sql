SELECT queue FROM paused_queues ORDER BY queue
