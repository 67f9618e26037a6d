DELETE FROM history_recordings WHERE recorded_at < ?1
