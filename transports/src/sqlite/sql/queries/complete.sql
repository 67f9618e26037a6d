-- The task is kept as done (run_at: when it completed) until prune_completed removes it. Its
-- last attempt is not appended to the history: it is read from these columns (owner,
-- started_at, run_at), which keeps a completion as cheap as the delete it replaced.
UPDATE tasks SET state = 'done', run_at = ?3, result = ?4, lease_until = NULL
 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'
