-- The oldest chunk (?5 at most) of queue ?1's completed tasks that go: completed before ?2,
-- or at ?3 with an id up to ?4 (the cap's cut-off). Oldest first on the claim-order index.
DELETE FROM tasks WHERE id IN (
    SELECT id FROM tasks WHERE queue = ?1 AND state = 'done'
       AND (run_at < ?2 OR (run_at = ?3 AND id <= ?4))
     ORDER BY run_at, id LIMIT ?5)
