SELECT queue, minute, counters FROM history
 WHERE minute >= ?1 AND (?2 IS NULL OR queue = ?2)
 ORDER BY queue, minute
