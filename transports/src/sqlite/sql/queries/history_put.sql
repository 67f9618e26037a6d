INSERT INTO history (minute, queue, counters) VALUES (?1, ?2, ?3)
 ON CONFLICT (minute, queue) DO UPDATE SET counters = excluded.counters
