DELETE FROM history WHERE minute < ?1
