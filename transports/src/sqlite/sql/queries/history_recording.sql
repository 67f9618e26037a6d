INSERT OR IGNORE INTO history_recordings (name, recorded_at) VALUES (?1, ?2)
