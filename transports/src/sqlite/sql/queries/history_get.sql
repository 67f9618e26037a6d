SELECT counters FROM history WHERE minute = ?1 AND queue = ?2
