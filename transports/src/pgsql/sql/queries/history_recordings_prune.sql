DELETE FROM {schema}.history_recordings WHERE recorded_at < $1
