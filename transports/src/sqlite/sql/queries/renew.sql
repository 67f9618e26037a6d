UPDATE tasks SET lease_until = ?1
 WHERE state = 'running' AND owner IN (SELECT value FROM json_each(?2))
