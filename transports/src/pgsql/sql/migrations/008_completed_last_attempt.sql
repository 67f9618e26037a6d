-- A completion no longer rewrites the task's history: its last attempt (a success) is kept in
-- columns of its own and added to the history when read (`task_completed.sql`,
-- `list_completed.sql`), which halves what keeping completed tasks costs a completion. Rows
-- completed before have it in their history already, and no owner here.
ALTER TABLE {schema}.completed ADD COLUMN owner TEXT COLLATE "C", ADD COLUMN started_at BIGINT;
